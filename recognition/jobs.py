"""Long work in the background: start a job, run it in a worker, cancel it, and pick it
up where a dead worker left it.

Every kind of job (imports.py, reclassify.py, finetune.py) registers one function that does the work
through a JobRun: it asks `should_stop()` between batches and reports its counts with
`progress()`. Everything else is here, once: the status a job moves through, the claim a
worker holds on it (renewed by a heartbeat, so a claim that goes stale means the worker
died and the sweep queues the job again), one running import per user, cancelling, and
the cleanup when a job ends however it ends.

As with thumbnails (tasks.py), the row, not the broker, says what is left to do: a kind's
function must skip the work a previous run finished, so a job can run twice, or be taken
over halfway, without doing anything twice.
"""

from __future__ import annotations

import logging
import threading
import time
from importlib import import_module
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from .errors import ServiceError
from .models import Job, JobItem, JobItemStatus, JobKind, JobStatus
from .selectors import job_get_for_user

logger = logging.getLogger(__name__)

# Progress reaches the row at least this often, and after at most this many items,
# whichever comes first (as long as items finish at all).
PROGRESS_SECONDS = 1.0
PROGRESS_ITEMS = 10
_ERROR_LENGTH = Job._meta.get_field("error").max_length
_SWEEP_BATCH = 100


class JobFailed(ServiceError):
    """Raised by a kind's function to end its job as failed with this message."""

    code = "job_failed"


@dataclass(frozen=True)
class JobKindHandler:
    run: Callable[[JobRun], None]
    # Called once the job has ended (done, failed or cancelled), e.g. to delete staged files.
    cleanup: Callable[[Job], None] | None = None


_HANDLERS: dict[str, JobKindHandler] = {}


def register(kind: str, run: Callable[[JobRun], None], cleanup: Callable[[Job], None] | None = None) -> None:
    _HANDLERS[kind] = JobKindHandler(run, cleanup)


# The module that registers each kind's handler when it is imported.
_KIND_MODULES = {
    JobKind.IMPORT: "recognition.imports",
    JobKind.RECLASSIFY: "recognition.reclassify",
    JobKind.FINETUNE: "recognition.finetune",
}


def _handler(kind: str) -> JobKindHandler:
    if kind not in _HANDLERS:
        import_module(_KIND_MODULES[kind])  # a worker may not have imported it yet
    return _HANDLERS[kind]


# --- Starting and cancelling (web requests, commands, the admin) ---------------------


def job_create(
    *,
    kind: str,
    owner: AbstractBaseUser | None,
    total: int,
    options: dict | None = None,
    model_key: str = "",
    items: Iterable[JobItem] = (),
) -> Job:
    """A queued job (with its items), queued for a worker once it is committed."""
    with transaction.atomic():
        job = Job.objects.create(
            kind=kind,
            owner=owner,
            total=total,
            options=options or {},
            model_key=model_key,
            created_at=timezone.now(),
        )
        batch = []
        for item in items:
            item.job = job
            batch.append(item)
        JobItem.objects.bulk_create(batch, batch_size=1000)
        failed = sum(item.status == JobItemStatus.FAILED for item in batch)
        if failed:
            Job.objects.filter(pk=job.pk).update(failed=failed)
            job.failed = failed
        transaction.on_commit(lambda: queue_job(job.pk))
    return job


def reopen(job: Job) -> None:
    """Queue an ended (cancelled or failed) job again as it stands: its items, cursor
    and counts say what is done, so its kind's function resumes after them."""
    with transaction.atomic():
        Job.objects.filter(pk=job.pk).update(
            status=JobStatus.QUEUED,
            cancel_requested=False,
            error="",
            finished_at=None,
            claimed_at=None,
        )
        transaction.on_commit(lambda: queue_job(job.pk))
    job.refresh_from_db()


def queue_job(job_id: int) -> None:
    """Send a worker the message to run this job. A broker that cannot take it now costs
    only time: the sweep sends it again."""
    from .tasks import run_job

    try:
        run_job.delay(job_id)
    except Exception as exc:  # kombu/redis raise their own connection errors
        logger.warning("Could not queue job %s (the sweep will): %s", job_id, exc)
        return
    Job.objects.filter(pk=job_id).update(queued_at=timezone.now())


def job_cancel(*, user: AbstractBaseUser, job_id: int) -> Job:
    """Cancel the user's job (Http404 if it is not theirs). A queued job ends at once; a
    running one stops before its next batch. Cancelling a finished job changes nothing."""
    job = job_get_for_user(user=user, job_id=job_id)
    return cancel(job)


def cancel(job: Job) -> Job:
    if job.finished:
        return job
    Job.objects.filter(pk=job.pk).update(cancel_requested=True)
    ended = Job.objects.filter(pk=job.pk, status=JobStatus.QUEUED).update(
        status=JobStatus.CANCELLED, finished_at=timezone.now()
    )
    job.refresh_from_db()
    if ended:
        _end_items(job)
        _cleanup(job)
        _start_next_import(job)
    return job


# --- Running (the worker) -------------------------------------------------------------


class JobRun:
    """What a kind's function sees of its job while it runs.

    It also holds the run's claim: the `claimed_at` it last wrote. Every write (progress,
    the heartbeat, the end) is conditional on it, so a run whose claim went stale and was
    taken by another worker finds out at its next write or check, and stops after the
    batch in hand instead of working beside the new owner and overwriting its counts."""

    def __init__(self, job: Job):
        self.job = job
        self.stopped = False
        self.lost = False  # another worker has taken the job over
        self._claim = job.claimed_at
        self._lock = threading.Lock()  # the heartbeat thread renews too
        self._written_at = time.monotonic()
        self._written_processed = job.processed

    def should_stop(self) -> bool:
        """True once the job was cancelled, or another worker took it over: the
        function should return without starting more work."""
        if not self.stopped:
            with self._lock:
                row = Job.objects.filter(pk=self.job.pk).values("cancel_requested", "claimed_at").first()
                self.lost = self.lost or row is None or row["claimed_at"] != self._claim
            self.stopped = self.lost or bool(row and row["cancel_requested"])
        return self.stopped

    def progress(
        self,
        *,
        done: int,
        failed: int,
        cursor: int | None = None,
        model_key: str | None = None,
        force: bool = False,
    ) -> None:
        """The job's counts so far (absolute, not increments) and the model version its
        latest results came from; written to the row when a second has passed or ten
        items finished since the last write, or with `force`, or with a new model."""
        job = self.job
        job.done, job.failed = done, failed
        if cursor is not None:
            job.cursor = cursor
        if model_key and model_key != job.model_key:
            job.model_key, force = model_key, True
        due = (
            force
            or job.processed - self._written_processed >= PROGRESS_ITEMS
            or time.monotonic() - self._written_at >= PROGRESS_SECONDS
        )
        if not due:
            return
        self.renew(done=job.done, failed=job.failed, cursor=job.cursor, model_key=job.model_key)
        self._written_at, self._written_processed = time.monotonic(), job.processed

    def renew(self, **fields) -> bool:
        """Write a fresh claim (and `fields`) if the claim is still this run's."""
        with self._lock:
            if self.lost:
                return False
            now = timezone.now()
            if Job.objects.filter(pk=self.job.pk, claimed_at=self._claim).update(claimed_at=now, **fields):
                self._claim = self.job.claimed_at = now
            else:
                self.lost = self.stopped = True
            return not self.lost

    def finish(self, status: str, error: str) -> bool:
        """End the job, if it is still this run's; False when another worker has it."""
        job = self.job
        with self._lock:
            ended = Job.objects.filter(
                pk=job.pk, status=JobStatus.RUNNING, claimed_at=self._claim
            ).update(
                status=status,
                done=job.done,
                failed=job.failed,
                cursor=job.cursor,
                error=error[:_ERROR_LENGTH],
                finished_at=timezone.now(),
                claimed_at=None,
            )
        if ended and status == JobStatus.CANCELLED:
            _end_items(job)
        return bool(ended)


def run(job_id: int) -> str:
    """Run (or resume) a job to its end; what happened, in a word."""
    from .tasks import heartbeat

    job = _claim(job_id)
    if job is None:
        return "nothing to do"
    handler = _handler(job.kind)
    job_run = JobRun(job)
    logger.info("Job %s (%s) running: %s of %s done", job.pk, job.kind, job.processed, job.total)
    try:
        with heartbeat(job_run.renew, f"job {job.pk}"):
            handler.run(job_run)
    except (JobFailed, ServiceError) as exc:
        if job_run.finish(JobStatus.FAILED, exc.message):
            logger.warning("Job %s failed: %s", job.pk, exc.message)
    except Exception as exc:
        # The engine's ModelUnavailable and the storage's failures carry a sentence too.
        message = getattr(exc, "message", None)
        if not isinstance(message, str):
            message = "The job stopped on an unexpected error; see the worker's log."
        if job_run.finish(JobStatus.FAILED, message):
            logger.exception("Job %s failed", job.pk)
    else:
        status = JobStatus.CANCELLED if job_run.should_stop() else JobStatus.DONE
        if not job_run.lost and job_run.finish(status, ""):
            logger.info("Job %s %s: %s done, %s failed of %s", job.pk, status, job.done, job.failed, job.total)
    finally:
        if job_run.lost:
            # Its claim went stale (a stalled worker) and another worker resumed it.
            logger.warning("Job %s was taken over by another worker; this run stopped", job.pk)
        job.refresh_from_db()
        if job.finished and not job_run.lost:
            _cleanup(job)
            _start_next_import(job)
    return "taken over" if job_run.lost else job.status


def _stale_before() -> datetime:
    return timezone.now() - timedelta(seconds=settings.RECOGNITION_TASK_STALE_SECONDS)


def _claim(job_id: int) -> Job | None:
    """Take the job if it is queued, or running under a claim nobody renews; None when
    it has ended, a live worker has it, or (an import) its owner has another running."""
    job = Job.objects.filter(pk=job_id).first()
    if job is None or job.finished:
        return None
    stale = _stale_before()
    if job.status == JobStatus.RUNNING and job.claimed_at and job.claimed_at >= stale:
        return None
    if job.cancel_requested and job.status == JobStatus.QUEUED:
        cancel(job)
        return None
    now = timezone.now()
    with transaction.atomic():
        if job.kind == JobKind.IMPORT and job.owner_id is not None:
            # Locking the owner serialises two workers claiming two of their imports
            # (PostgreSQL; SQLite has one writer anyway): one running import per user.
            get_user_model().objects.select_for_update().filter(pk=job.owner_id).first()
            busy = Job.objects.filter(
                owner_id=job.owner_id, kind=JobKind.IMPORT, status=JobStatus.RUNNING
            ).exclude(pk=job.pk)
            if busy.exists():
                return None  # it waits; the running one starts it when it ends
        taken = Job.objects.filter(pk=job.pk, status=job.status, claimed_at=job.claimed_at).update(
            status=JobStatus.RUNNING, claimed_at=now, started_at=job.started_at or now
        )
    if not taken:
        return None  # another worker got there first
    job.refresh_from_db()
    return job


def _end_items(job: Job) -> None:
    """A cancelled job's items that never ran say so."""
    job.items.filter(status=JobItemStatus.PENDING).update(
        status=JobItemStatus.CANCELLED, finished_at=timezone.now()
    )


def _cleanup(job: Job) -> None:
    cleanup = _handler(job.kind).cleanup
    if cleanup is None:
        return
    try:
        cleanup(job)
    except Exception:  # leftovers are harmless; a job must still end
        logger.exception("Cleaning up after job %s failed", job.pk)


def _start_next_import(job: Job) -> None:
    if job.kind != JobKind.IMPORT or job.owner_id is None:
        return
    following = (
        Job.objects.filter(owner_id=job.owner_id, kind=JobKind.IMPORT, status=JobStatus.QUEUED)
        .order_by("created_at", "pk")
        .values_list("pk", flat=True)
        .first()
    )
    if following is not None:
        queue_job(following)


def sweep() -> int:
    """Queue again every job nobody is working on: running under a stale claim, or
    queued with no message sent within the stale limit. Returns how many."""
    stale = _stale_before()
    unattended = Job.objects.filter(
        Q(status=JobStatus.RUNNING, claimed_at__lt=stale)
        | Q(status=JobStatus.RUNNING, claimed_at__isnull=True)
        | Q(status=JobStatus.QUEUED) & (Q(queued_at__lt=stale) | Q(queued_at__isnull=True))
    )
    ids = list(unattended.order_by("created_at", "pk").values_list("pk", flat=True)[:_SWEEP_BATCH])
    for job_id in ids:
        queue_job(job_id)
    if ids:
        logger.info("Sweep queued %s jobs again", len(ids))
    return len(ids)
