"""Background work, run by `celery -A classifier_site worker` (classifier_site/celery.py).

Tasks take ids, never payloads, and can run twice without harm: the database row, not
the broker, says what is left to do. make_thumbnail claims its row with one conditional
UPDATE (pending, and unclaimed or with a stale claim), so of two deliveries of the same
message only one does the work; it renews the claim while it works, so a claim that
stops being renewed means its worker died, and sweep() queues that row again. This is
what makes a worker killed mid-task lose nothing even on a broker that drops an
unacknowledged message with its consumer (kombu's filesystem transport).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from celery import shared_task
from django.conf import settings
from django.db import connections
from django.db.models import F, Q
from django.utils import timezone

from . import storage, thumbnails
from .engine.images import ImageRejected
from .models import StoredImage, ThumbnailState

logger = logging.getLogger(__name__)

# A thumbnail whose storage kept failing is given up after this many tries (the sweep
# retries a failed try once its claim is stale, so this is minutes, not a busy loop).
MAX_THUMBNAIL_ATTEMPTS = 5
_SWEEP_BATCH = 500
_ERROR_LENGTH = StoredImage._meta.get_field("thumbnail_error").max_length


def queue_thumbnail(stored_image_id: int) -> None:
    """Queue the thumbnail of a newly stored image (called once its row is committed). A
    broker that cannot take the message now costs only time: the row is pending, and the
    next sweep queues it again."""
    try:
        make_thumbnail.delay(stored_image_id)
    except Exception as exc:  # kombu/redis raise their own connection errors
        logger.warning(
            "Could not queue the thumbnail of image %s (the sweep will): %s", stored_image_id, exc
        )


@shared_task(acks_late=True, ignore_result=True)
def make_thumbnail(stored_image_id: int) -> str:
    """Render and store the thumbnail of one stored image; what happened, in a word."""
    claim = _claim(stored_image_id)
    if claim is None:
        return "nothing to do"  # made already, failed, gone, or another worker has it
    stored = StoredImage.objects.get(pk=stored_image_id)
    try:
        renew = claim_renewer(StoredImage, stored_image_id, "thumbnail_claimed_at", claim)
        with heartbeat(renew, f"image {stored_image_id}"):
            jpeg = thumbnails.render(stored)
            storage.save(thumbnails.thumbnail_name(stored), jpeg)
    except ImageRejected as exc:
        _finish(stored_image_id, ThumbnailState.FAILED, exc.message)
        logger.warning("No thumbnail for image %s: %s", stored.sha256, exc.message)
        return "failed"
    except FileNotFoundError:
        _finish(stored_image_id, ThumbnailState.FAILED, "The original image is missing.")
        logger.warning("No thumbnail for image %s: the original is missing", stored.sha256)
        return "failed"
    except OSError as exc:  # storage.StorageError: the claim goes stale, the sweep retries
        logger.warning("Thumbnail of image %s not stored, will retry: %s", stored.sha256, exc)
        return "retry"
    _finish(stored_image_id, ThumbnailState.READY, "")
    logger.info("Thumbnail made for image %s", stored.sha256)
    return "made"


@shared_task(acks_late=True, ignore_result=True)
def run_job(job_id: int) -> str:
    """Run, or resume, one background job (recognition/jobs.py)."""
    from . import jobs

    return jobs.run(job_id)


def sweep() -> int:
    """Queue again every pending thumbnail nobody is working on: claimed by a worker that
    stopped renewing its claim, or never claimed although its message should have been
    taken by now; each at most once per stale limit. Gives up on rows tried too often. Then queues the jobs nobody works on
    (jobs.sweep) and checks which model is active.
    Returns how many were queued."""
    stale = _stale_before()
    pending = StoredImage.objects.filter(thumbnail_state=ThumbnailState.PENDING)
    abandoned = pending.filter(
        Q(thumbnail_claimed_at__lt=stale)
        | Q(thumbnail_claimed_at__isnull=True, created_at__lt=stale),
        Q(thumbnail_queued_at__isnull=True) | Q(thumbnail_queued_at__lt=stale),
    )
    gave_up = abandoned.filter(thumbnail_attempts__gte=MAX_THUMBNAIL_ATTEMPTS).update(
        thumbnail_state=ThumbnailState.FAILED,
        thumbnail_claimed_at=None,
        thumbnail_error=f"Gave up after {MAX_THUMBNAIL_ATTEMPTS} attempts.",
    )
    if gave_up:
        logger.error("Gave up on %s thumbnails after %s attempts", gave_up, MAX_THUMBNAIL_ATTEMPTS)
    ids = list(abandoned.values_list("pk", flat=True).order_by("pk")[:_SWEEP_BATCH])
    StoredImage.objects.filter(pk__in=ids).update(thumbnail_queued_at=timezone.now())
    for stored_image_id in ids:
        make_thumbnail.delay(stored_image_id)
    if ids:
        logger.info("Sweep queued %s pending thumbnails again", len(ids))
    from . import jobs

    jobs.sweep()
    _refresh_active_model()
    return len(ids)


def _refresh_active_model() -> None:
    from . import configured_classifier

    refresh = getattr(configured_classifier, "refresh_active_model", None)
    if refresh is not None:
        refresh()


def _stale_before() -> datetime:
    return timezone.now() - timedelta(seconds=settings.RECOGNITION_TASK_STALE_SECONDS)


def _claim(stored_image_id: int) -> datetime | None:
    """Take the row if it is pending and nobody live has it; the claim's time, or None."""
    now = timezone.now()
    taken = (
        StoredImage.objects.filter(pk=stored_image_id, thumbnail_state=ThumbnailState.PENDING)
        .filter(Q(thumbnail_claimed_at__isnull=True) | Q(thumbnail_claimed_at__lt=_stale_before()))
        .update(thumbnail_claimed_at=now, thumbnail_attempts=F("thumbnail_attempts") + 1)
    )
    return now if taken else None


def _finish(stored_image_id: int, state: str, error: str) -> None:
    StoredImage.objects.filter(pk=stored_image_id, thumbnail_state=ThumbnailState.PENDING).update(
        thumbnail_state=state, thumbnail_claimed_at=None, thumbnail_error=error[:_ERROR_LENGTH]
    )


@contextmanager
def heartbeat(renew: Callable[[], bool], name: str) -> Iterator[None]:
    """Call `renew` every third of the stale limit while the body runs, so the sweep can
    tell a live worker's claim from a dead one's; stop once it answers False (the work
    finished, or another worker took it over)."""
    stop = threading.Event()
    interval = settings.RECOGNITION_TASK_STALE_SECONDS / 3

    def beat() -> None:
        try:
            while not stop.wait(interval):
                if not renew():
                    return
        except Exception:
            logger.exception("Could not renew the claim on %s", name)
        finally:
            connections.close_all()  # this thread's own connection

    thread = threading.Thread(target=beat, name=f"heartbeat-{name}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def claim_renewer(model, pk: int, field: str, claimed_at: datetime) -> Callable[[], bool]:
    """Renew a claim kept in a row's `field` (a time), only while it is still the one
    this worker wrote: a claim that went stale and was taken is not taken back."""
    claim = claimed_at

    def renew() -> bool:
        nonlocal claim
        now = timezone.now()
        if not model.objects.filter(pk=pk, **{field: claim}).update(**{field: now}):
            return False
        claim = now
        return True

    return renew
