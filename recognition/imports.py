"""Bulk import: many pictures at once, classified by a worker in the background.

The request only stages the files in the storage (under imports/<token>/) and records a
job with one item per file. A ZIP archive instead of files is judged whole first
(recognition/archives.py: refused before anything is recorded or staged), then staged as
it came, once, with one item per file in it; its refused entries are failed items from the
start, and each item's `source` is its entry's name, read back from the staged archive.
The worker reads them back a batch at a time, sends each
batch through the engine together (services.upload_classify_batch: same limits, same
dedupe, same history as a single upload) and records each item's outcome. An item is
finished once its row says so, so a worker that dies mid-import loses nothing and
redoes nothing finished: the next run starts at the first pending item.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import IO

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.files.uploadedfile import UploadedFile
from django.template.defaultfilters import filesizeformat
from django.utils import timezone

from . import archives, jobs, storage
from .engine.defaults import DEFAULT_TOP_K
from .errors import ServiceError, StorageFailed, UploadTooLarge
from .filenames import clean_filename
from .models import Job, JobItem, JobItemStatus, JobKind, JobStatus
from .services import UploadOutcome, upload_classify_batch

logger = logging.getLogger(__name__)

STAGING_FOLDER = "imports"
_MESSAGE_LENGTH = JobItem._meta.get_field("error_message").max_length


class NothingToImport(ServiceError):
    code = "nothing_to_import"


class ImportAllowanceExceeded(ServiceError):
    status = 429
    code = "import_allowance_exceeded"

    def __init__(self, asked: int, remaining: int, per_day: int):
        self.remaining = remaining
        super().__init__(
            f"This import has {asked} pictures but only {remaining} of your {per_day} "
            "imported pictures a day remain. Import fewer, or try again tomorrow."
        )


def import_allowance_remaining(user: AbstractBaseUser) -> int:
    """Pictures the user may still import in the last 24 hours: the items of their
    imports started since then, except those a cancellation never ran."""
    since = timezone.now() - timedelta(days=1)
    used = (
        JobItem.objects.filter(
            job__owner=user, job__kind=JobKind.IMPORT, job__created_at__gte=since
        )
        .exclude(status=JobItemStatus.CANCELLED)
        .count()
    )
    return max(settings.RECOGNITION_IMPORT_RATE - used, 0)


def import_start(
    *,
    user: AbstractBaseUser,
    files: Sequence[UploadedFile] = (),
    archive: UploadedFile | None = None,
    top_k: int = DEFAULT_TOP_K,
) -> Job:
    """Stage the pictures (the files, or one ZIP archive of them) and queue their import;
    the job, queued (or waiting behind the user's running import). Raises NothingToImport,
    ArchiveWithFiles, ImportTooLarge, archives.ArchiveRejected, ImportAllowanceExceeded or
    StorageFailed before anything is recorded or staged."""
    if files and archive is not None:
        raise ArchiveWithFiles(
            "Send either pictures (`files` parts) or one ZIP archive (an `archive` part), "
            "not both."
        )
    if not files and archive is None:
        raise NothingToImport(
            "Send one or more pictures, one `files` part each, or one ZIP archive of them as "
            "the `archive` part."
        )
    token = uuid.uuid4().hex
    options: dict = {"top_k": top_k, "token": token}
    if archive is not None:
        items = _archive_items(archive)
        options["archive"] = f"{STAGING_FOLDER}/{token}/archive.zip"
    else:
        items = _file_items(files)
    asked = sum(item.status == JobItemStatus.PENDING for item in items)
    remaining = import_allowance_remaining(user)
    if len(items) > remaining:
        raise ImportAllowanceExceeded(len(items), remaining, settings.RECOGNITION_IMPORT_RATE)
    staged: list[str] = []
    try:
        if archive is not None:
            _stage(options["archive"], archive, staged)
        else:
            for item, file in zip(items, files):
                if item.status == JobItemStatus.PENDING:
                    item.source = f"{STAGING_FOLDER}/{token}/{item.position}"
                    _stage(item.source, file, staged)
        return jobs.job_create(
            kind=JobKind.IMPORT, owner=user, total=len(items), options=options, items=items
        )
    except BaseException:
        for name in staged:
            storage.delete_quietly(name)
        raise
    finally:
        logger.info("Import of %s pictures by user %s staged", asked, user.pk)


class ArchiveWithFiles(ServiceError):
    code = "archive_with_files"


class TooManyArchives(ServiceError):
    """More than one `archive` part in one request (raised by the API, which sees them)."""

    code = "one_archive_only"

    def __init__(self):
        super().__init__("Send one ZIP archive per import; start one import per archive.")


def _file_items(files: Sequence[UploadedFile]) -> list[JobItem]:
    _check_request_size(sum(file.size or 0 for file in files))
    limit = settings.RECOGNITION_MAX_UPLOAD_BYTES
    items = []
    for position, file in enumerate(files):
        item = JobItem(position=position, filename=clean_filename(file.name))
        if file.size is not None and file.size > limit:
            _refuse(item, UploadTooLarge(limit))
        items.append(item)
    return items


_SOURCE_LENGTH = JobItem._meta.get_field("source").max_length


def _archive_items(archive: UploadedFile) -> list[JobItem]:
    """One item per file in the archive, in its order; ArchiveRejected for an archive
    refused whole."""
    _check_request_size(archive.size or 0)
    archive.seek(0)
    try:
        members = archives.inspect(archive, **archives.limits_from_settings())
    finally:
        archives.release(archive)
    items = []
    for member in members:
        item = JobItem(position=member.position, filename=member.filename)
        if member.problem_code is not None:
            refusal = archives.ArchiveMemberRefused(member.problem_code, member.problem_message)
            _refuse(item, refusal)
        elif len(member.name) > _SOURCE_LENGTH:
            # The worker finds the entry again by its full name, which must fit the row.
            _refuse(
                item,
                archives.ArchiveMemberRefused(
                    "unsafe_name",
                    f"This file's path in the archive is longer than {_SOURCE_LENGTH} "
                    "characters; shorten its folders' names.",
                ),
            )
        else:
            item.source = member.name
        items.append(item)
    return items


class ImportTooLarge(ServiceError):
    status = 413
    code = "import_too_large"

    def __init__(self, max_bytes: int):
        super().__init__(
            f"This import is too large: at most {filesizeformat(max_bytes)} per import "
            "request is accepted. Split it into several imports."
        )


def _check_request_size(size: int) -> None:
    limit = settings.RECOGNITION_IMPORT_MAX_ARCHIVE_BYTES
    if size > limit:
        raise ImportTooLarge(limit)


def _refuse(item: JobItem, error: ServiceError) -> None:
    item.status = JobItemStatus.FAILED
    item.error_code = error.code
    item.error_message = error.message[:_MESSAGE_LENGTH]
    item.finished_at = timezone.now()


def _stage(name: str, file: UploadedFile, staged: list[str]) -> None:
    file.seek(0)
    try:
        # A large upload is already on disk: copy it from there in chunks, not via memory.
        path = getattr(file, "temporary_file_path", None)
        if path is not None:
            storage.save_file(name, path())
        else:
            storage.save(name, file.read())
    except storage.StorageError as exc:
        raise StorageFailed(exc) from exc
    staged.append(name)


# --- The worker's side -----------------------------------------------------------------


def _run_import(job_run: jobs.JobRun) -> None:
    job = job_run.job
    with _staged_reader(job) as read:
        _run_batches(job_run, read)


def _run_batches(job_run: jobs.JobRun, read: Callable[[JobItem], bytes]) -> None:
    job = job_run.job
    top_k = int(job.options.get("top_k", DEFAULT_TOP_K))
    batch_size = settings.RECOGNITION_MAX_BATCH
    counts = {
        status: job.items.filter(status=status).count()
        for status in (JobItemStatus.DONE, JobItemStatus.FAILED)
    }
    done, failed = counts[JobItemStatus.DONE], counts[JobItemStatus.FAILED]
    job_run.progress(done=done, failed=failed, force=True)
    while not job_run.should_stop():
        batch = list(
            job.items.filter(status=JobItemStatus.PENDING).order_by("position")[:batch_size]
        )
        if not batch:
            return
        readable: list[JobItem] = []
        contents: list[tuple[str, bytes]] = []
        for item in batch:
            try:
                contents.append((item.filename, read(item)))
                readable.append(item)
            except ServiceError as exc:
                _refuse(item, exc)
        outcomes = upload_classify_batch(user=job.owner, files=contents, top_k=top_k)
        now = timezone.now()
        for item, outcome in zip(readable, outcomes):
            if isinstance(outcome, UploadOutcome):
                item.status, item.upload, item.finished_at = JobItemStatus.DONE, outcome.upload, now
            else:
                _refuse(item, outcome)
        JobItem.objects.bulk_update(
            batch, ["status", "upload", "error_code", "error_message", "finished_at"]
        )
        done += sum(item.status == JobItemStatus.DONE for item in batch)
        failed += sum(item.status == JobItemStatus.FAILED for item in batch)
        job_run.progress(done=done, failed=failed, model_key=_model_key(outcomes), force=True)


def _model_key(outcomes: Sequence[object]) -> str | None:
    """The model version that classified this batch (None when nothing was)."""
    for outcome in outcomes:
        if isinstance(outcome, UploadOutcome):
            return outcome.upload.classification.model_key
    return None


@contextmanager
def _staged_reader(job: Job) -> Iterator[Callable[[JobItem], bytes]]:
    """How this run reads an item's bytes: its own staged file, or its entry of the
    staged archive, opened once for the whole run (zipfile seeks all over it)."""
    name = job.options.get("archive")
    if not name:
        yield _read_staged
        return
    try:
        file = _open_seekable(name)
    except FileNotFoundError:
        file = None
    limit = settings.RECOGNITION_MAX_UPLOAD_BYTES

    def read_member(item: JobItem) -> bytes:
        if file is None:
            raise _StagedFileMissing()
        # Only the position and the name find the entry; the size is checked as it is read.
        member = archives.Member(
            position=item.position, name=item.source, filename=item.filename, size=0
        )
        return archives.read_member(file, member, max_entry_bytes=limit)

    try:
        yield read_member
    finally:
        if file is not None:
            archives.release(file)
            file.close()


# Above this an archive's copy goes to a temporary file rather than stay in memory.
_SPOOL_BYTES = 32 * 1024 * 1024


def _open_seekable(name: str) -> IO[bytes]:
    """The staged file, open for reading anywhere in it: a file on the local disk is
    that already; an object store's stream is not, so it is copied first."""
    stream = storage.open_file(name)
    seekable = getattr(stream, "seekable", None)
    if seekable is not None and seekable():
        return stream
    # Closed by the caller, like the stream it stands for.
    copy = tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES)  # noqa: SIM115
    try:
        with stream:
            shutil.copyfileobj(stream, copy, 1024 * 1024)
        copy.seek(0)
    except BaseException:
        copy.close()
        raise
    return copy


def _read_staged(item: JobItem) -> bytes:
    try:
        with storage.open_file(item.source) as file:
            return file.read()
    except FileNotFoundError:
        raise _StagedFileMissing() from None


class _StagedFileMissing(ServiceError):
    code = "staged_file_missing"

    def __init__(self):
        super().__init__("The staged file is gone; please import this picture again.")


def _cleanup(job: Job) -> None:
    """The staged files go once the job has ended: the pictures are in history now."""
    archive = job.options.get("archive")
    if archive:
        # The items' sources are names inside the archive, chosen by whoever made it: never
        # storage names to delete.
        storage.delete_quietly(archive)
        return
    for name in job.items.exclude(source="").values_list("source", flat=True):
        storage.delete_quietly(name)


jobs.register(JobKind.IMPORT, _run_import, _cleanup)


def import_rate(job: Job) -> tuple[float | None, float | None]:
    """Pictures per second so far and seconds left at that rate (None until known)."""
    if job.started_at is None or job.processed == 0:
        return None, None
    end = job.finished_at or timezone.now()
    elapsed = (end - job.started_at).total_seconds()
    if elapsed <= 0:
        return None, None
    rate = job.processed / elapsed
    left = 0.0 if job.status != JobStatus.RUNNING else (job.total - job.processed) / rate
    return rate, left
