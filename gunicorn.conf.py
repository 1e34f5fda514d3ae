"""gunicorn settings for the recognition service; environment variables override."""

import os
import sys

from classifier_site.env import BadEnvironmentValue, envint

# The layout, measured with bench/layouts.py (README, "Serving layout"): one process
# whose model uses every core, with eight request threads so that a full batch of eight
# can gather while others decode and store. Under load, two processes at one model
# thread each gave 28 % more images per second, at twice the memory and 1.3x the
# lone-request latency; two runners in one process gave 14 % more at the same memory,
# at 1.4x the lone-request latency.
# Read with the site's own typed helpers, so WEB_CONCURRENCY=abc stops gunicorn with one
# line naming the variable instead of a traceback from gunicorn's config loader.
try:
    bind = f"{os.getenv('HOST', '127.0.0.1')}:{envint('PORT', 8000, minimum=1)}"
    workers = envint("WEB_CONCURRENCY", 1, minimum=1)
    threads = envint("GUNICORN_THREADS", 8, minimum=1)
    timeout = envint("GUNICORN_TIMEOUT", 60, minimum=0)  # 0: no limit
    max_requests = envint("GUNICORN_MAX_REQUESTS", 0, minimum=0)  # 0: never recycled
except BadEnvironmentValue as exc:
    sys.exit(f"gunicorn.conf.py: {exc}")
accesslog = os.getenv("GUNICORN_ACCESS_LOG", "-") or None  # empty: no access log
wsgi_app = "classifier_site.wsgi:application"


def on_starting(server):
    """Refuse to start, before any worker forks, when the configuration cannot work: a bad
    variable, a misconfigured or unreachable object store or Redis. (A database that is down
    is not a reason: pages and the API answer 503 until it is back, and the health check says so.)"""
    from classifier_site.startup import refuse_bad_configuration

    refuse_bad_configuration("gunicorn")


def post_worker_init(worker):
    """Load and warm the model before this worker takes its first request."""
    from django.conf import settings

    from recognition.configured_classifier import get_classifier
    from recognition.engine.classifier import ModelUnavailable

    if not settings.RECOGNITION_WARM_UP:
        return
    try:
        get_classifier().warm_up()
    except ModelUnavailable as exc:
        # Serve anyway: pages work and uploads answer 503 with the fix, until it is fixed.
        worker.log.warning("Model unavailable: %s", exc)


def worker_exit(server, worker):
    """Answer the requests already waiting for the model before the worker goes."""
    from recognition.configured_classifier import reset_classifier

    reset_classifier()
