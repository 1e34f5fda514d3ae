"""The Celery app: `celery -A classifier_site worker` runs the background work.

Its configuration is the CELERY_* settings (classifier_site/settings.py): the broker is
Redis when REDIS_URL is set, else an embedded one in the data dir. Each worker also runs
its own sweep on a timer (recognition.tasks.sweep): at start and every
RECOGNITION_TASK_SWEEP_SECONDS it queues again the work a dead worker left behind and
checks which model is active. A timer in every worker, rather than one `celery beat`,
because the model check must happen in every worker, and the sweep is idempotent, so
two workers sweeping at once do no harm; there is no beat process to run or forget.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from pathlib import Path

from celery import Celery
from celery.signals import worker_ready, worker_shutdown

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "classifier_site.settings")

app = Celery("classifier_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

logger = logging.getLogger(__name__)
_stop_sweeping = threading.Event()


@app.on_after_configure.connect
def make_broker_folders(sender: Celery, **_kwargs) -> None:
    """The embedded (filesystem) broker's folders, which kombu expects to exist."""
    options = sender.conf.broker_transport_options or {}
    for key in ("data_folder_in", "data_folder_out", "control_folder"):
        if key in options:
            Path(options[key]).mkdir(parents=True, exist_ok=True)


@worker_ready.connect
def _start_sweeping(**_kwargs) -> None:
    from django.conf import settings

    interval = settings.RECOGNITION_TASK_SWEEP_SECONDS
    thread = threading.Thread(target=_sweep_every, args=(interval,), name="sweep", daemon=True)
    thread.start()


@worker_shutdown.connect
def _stop(**_kwargs) -> None:
    _stop_sweeping.set()


def _sweep_every(interval: float) -> None:
    from django.db import DatabaseError, close_old_connections
    from kombu.exceptions import OperationalError as BrokerError

    from recognition.tasks import sweep

    while True:
        try:
            sweep()
        except (DatabaseError, BrokerError) as exc:  # an outage: the next tick tries again
            logger.error("The sweep failed, it runs again in %s s: %s", interval, exc)
        except Exception:
            logger.exception("The sweep failed, it runs again in %s s", interval)
        finally:
            close_old_connections()
        if _stop_sweeping.wait(interval):
            return


def _started_as_worker() -> bool:
    program = Path(sys.argv[0])
    celery = program.name == "celery" or program.parent.name == "celery"
    return celery and "worker" in sys.argv[1:]


if _started_as_worker():
    # Like gunicorn's master: a bad variable, an unreachable Redis or object
    # store stops the worker with one paragraph each, not a traceback or endless retries.
    from .startup import refuse_bad_configuration

    refuse_bad_configuration("celery worker")
