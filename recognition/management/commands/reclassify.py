import signal
import sys
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, connections
from tqdm import tqdm

from recognition import jobs, reclassify
from recognition.models import Job, JobStatus

# How often the progress bar reads the job's row, and a follower looks at the job.
POLL_SECONDS = 0.5


class Command(BaseCommand):
    help = (
        "Classify every stored image with a prepared model version (default: the active "
        "model), keeping the classifications of other versions. Runs the job here with a "
        "progress bar (Ctrl-C cancels it; running the command again resumes it), or with "
        "--background queues it for the workers."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--model", metavar="KEY", help="a prepared build, e.g. resnet18-1a2b3c4d5e6f"
        )
        parser.add_argument(
            "--only-missing",
            action="store_true",
            help="only the images this version has not classified yet",
        )
        parser.add_argument(
            "--background",
            action="store_true",
            help="queue the job for the workers and return; follow it in the admin (Jobs)",
        )

    def handle(self, *args: str, **options: Any) -> str:
        try:
            job = reclassify.reclassify_start(key=options["model"], only_missing=options["only_missing"])
        except reclassify.ReclassifyRefused as exc:
            raise CommandError(exc.message) from None
        except DatabaseError as exc:
            raise CommandError(
                f"Reclassification is a job recorded in the database, and the database cannot "
                f"be used ({exc}). Check DATABASE_URL and run `python manage.py migrate`, then "
                "try again."
            ) from None
        started = "Resuming" if job.processed or job.started_at else "Starting"
        if options["background"]:
            return (
                f"{started} reclassification #{job.pk} with {job.model_key} in the background: "
                f"{job.total - job.processed} of {job.total} images to go. Follow it in the "
                "admin (Jobs)."
            )
        if options["verbosity"] > 0:
            self.stdout.write(
                f"{started} reclassification #{job.pk} with {job.model_key}: "
                f"{job.total - job.processed} of {job.total} images to go."
            )
        interrupted = threading.Event()
        with _cancel_on_ctrl_c(job.pk, interrupted), _progress_bar(job, options["verbosity"]):
            _run_or_follow(job)
        job.refresh_from_db()
        return _outcome(job, interrupted.is_set())


def _run_or_follow(job: Job) -> None:
    """Run the job here; when a worker has it already, follow it until it ends (and take
    it over should that worker die: its claim goes stale and jobs.run claims it)."""
    while True:
        jobs.run(job.pk)
        job.refresh_from_db()
        if job.finished:
            return
        threading.Event().wait(POLL_SECONDS)


def _outcome(job: Job, interrupted: bool) -> str:
    failed = f"; {job.failed} could not be read or decoded (see the log)" if job.failed else ""
    if job.status == JobStatus.DONE:
        return f"Reclassified {job.done} of {job.total} images with {job.model_key}{failed}."
    again = "Run the same command again to resume it where it stopped."
    if job.status == JobStatus.CANCELLED:
        raise CommandError(
            f"Reclassification #{job.pk} was cancelled after {job.processed} of {job.total} "
            f"images{failed}. {again}",
            returncode=130 if interrupted else 1,
        )
    raise CommandError(f"Reclassification #{job.pk} failed: {job.error} {again}")


class _cancel_on_ctrl_c:
    """The first Ctrl-C cancels the job the way the admin would (the run stops before
    its next batch and records it cancelled); a second one stops at once."""

    def __init__(self, job_id: int, interrupted: threading.Event):
        self.job_id, self.interrupted = job_id, interrupted
        self.previous = None

    def __enter__(self) -> None:
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)

    def __exit__(self, *exc_info: Any) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.interrupted.is_set():
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        self.interrupted.set()
        print("\nCancelling after the current batch (Ctrl-C again to stop at once)…", file=sys.stderr)
        # Not here: the handler may have interrupted a query on this thread's connection.
        threading.Thread(target=_cancel, args=(self.job_id,), daemon=True).start()


def _cancel(job_id: int) -> None:
    try:
        jobs.cancel(Job.objects.get(pk=job_id))
    finally:
        connections.close_all()  # this thread's own connection


class _progress_bar:
    """A bar that follows the job's row (done + failed of total), read by a thread of
    its own while this one runs the job: the same counts a worker would show."""

    def __init__(self, job: Job, verbosity: int):
        self.job = job
        self.enabled = verbosity > 0
        self.stop = threading.Event()

    def __enter__(self) -> None:
        if not self.enabled:
            return
        # tqdm draws with carriage returns, which Django's line-ending wrapper would break.
        self.bar = tqdm(
            total=self.job.total, initial=self.job.processed, unit="image", file=sys.stderr
        )
        self.thread = threading.Thread(target=self._follow, daemon=True)
        self.thread.start()

    def __exit__(self, *exc_info: Any) -> None:
        if not self.enabled:
            return
        self.stop.set()
        self.thread.join()
        self._show(Job.objects.filter(pk=self.job.pk).values("done", "failed", "total").first(), draw=False)
        self.bar.close()  # draws the final counts

    def _follow(self) -> None:
        try:
            while not self.stop.wait(POLL_SECONDS):
                self._show(Job.objects.filter(pk=self.job.pk).values("done", "failed", "total").first())
        except DatabaseError:
            pass  # only the bar stops; the job's own writes report their failures
        finally:
            connections.close_all()

    def _show(self, row: dict | None, draw: bool = True) -> None:
        if row is None:  # not visible to this connection (yet)
            return
        self.bar.total = row["total"]
        self.bar.n = row["done"] + row["failed"]
        self.bar.set_postfix(failed=row["failed"], refresh=False)
        if draw:
            self.bar.refresh()
