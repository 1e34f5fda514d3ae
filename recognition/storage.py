"""The one way image, thumbnail and published-model files are read and written: through
Django's storage API (`STORAGES["default"]`), the local disk under MEDIA_ROOT by default,
an S3-compatible object store when RECOGNITION_S3_BUCKET is set.

Names derive from the SHA-256 only, so a user's filename never reaches the store and the
same bytes are stored once. Writes are whole or nothing. Every failure of the store but
"not found" is raised as StorageError (an OSError, the backend's own error as its cause),
which the services turn into errors.StorageFailed.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO

from botocore.exceptions import BotoCoreError, ClientError
from django.core.files.base import ContentFile, File
from django.core.files.storage import Storage, default_storage

logger = logging.getLogger(__name__)

# Pillow format name -> (file extension, Content-Type); MPO is a JPEG with extra frames.
FORMATS: dict[str, tuple[str, str]] = {
    "JPEG": ("jpg", "image/jpeg"),
    "MPO": ("jpg", "image/jpeg"),
    "PNG": ("png", "image/png"),
    "GIF": ("gif", "image/gif"),
    "WEBP": ("webp", "image/webp"),
    "BMP": ("bmp", "image/bmp"),
    "TIFF": ("tif", "image/tiff"),
}
# Formats every current browser shows in an <img>; the others are shown as thumbnails.
BROWSER_FORMATS = frozenset({"JPEG", "MPO", "PNG", "GIF", "WEBP", "BMP"})


class StorageError(OSError):
    """The store failed (disk full or read-only, object store unreachable or refusing);
    `errno` is the system's when there is one (ENOSPC: full)."""


@dataclass(frozen=True)
class StoredFile:
    name: str
    size: int
    modified: datetime


def image_name(sha256: str, image_format: str) -> str:
    extension = FORMATS.get(image_format, ("bin", ""))[0]
    return f"images/{sha256[:2]}/{sha256[2:4]}/{sha256}.{extension}"


def thumbnail_name(sha256: str) -> str:
    return f"thumbnails/{sha256[:2]}/{sha256}.jpg"


def content_type(image_format: str) -> str:
    return FORMATS.get(image_format, ("bin", "application/octet-stream"))[1]


def save(name: str, data: bytes) -> None:
    """Store `data` under `name`, replacing what was there; readers see the old object
    or the whole new one."""
    with _translated(name):
        _backend().save(name, ContentFile(data, name=name))


def save_if_missing(name: str, data: bytes) -> bool:
    """Store `data` unless `name` is already there (names are content-derived); True if
    written."""
    if exists(name):
        return False
    save(name, data)
    return True


def save_file(name: str, path_on_disk: Path | str) -> None:
    """Store a local file, read in chunks (model artifacts are large)."""
    with _translated(name), open(path_on_disk, "rb") as handle:
        _backend().save(name, File(handle, name=name))


def open_file(name: str) -> IO[bytes]:
    """A binary file to stream from, read as it is consumed; the caller closes it.
    FileNotFoundError when there is no such file."""
    backend = _backend()
    with _translated(name):
        opener = getattr(backend, "open_stream", None)
        return opener(name) if opener is not None else backend.open(name, "rb")


def exists(name: str) -> bool:
    with _translated(name):
        return _backend().exists(name)


def delete(name: str) -> None:
    """Remove a file; nothing happens when it is already gone."""
    try:
        with _translated(name):
            _backend().delete(name)
    except FileNotFoundError:
        pass


def delete_quietly(name: str) -> None:
    """Remove a file that is no longer referenced; a failure only leaves garbage behind
    (cleanup_orphans finds it), so it is logged, not raised."""
    try:
        delete(name)
    except StorageError as exc:
        logger.warning("Could not remove %s: %s", name, exc)


def list_files(prefix: str) -> Iterator[StoredFile]:
    """Every file whose name starts with the folder `prefix` (say "images"), at any depth."""
    backend = _backend()
    with _translated(prefix):
        lister = getattr(backend, "iter_files", None)
        entries = lister(prefix) if lister is not None else _walk(backend, prefix.rstrip("/"))
        for name, size, modified in entries:
            yield StoredFile(name=name, size=size, modified=modified)


def _backend() -> Storage:
    # Looked up on each call: tests give every test its own folder or key prefix.
    return default_storage


def _walk(backend: Storage, folder: str) -> Iterator[tuple[str, int, datetime]]:
    """Any other Django storage: listdir, recursively."""
    try:
        folders, files = backend.listdir(folder)
    except FileNotFoundError:
        return
    for filename in sorted(files):
        name = f"{folder}/{filename}"
        yield name, backend.size(name), backend.get_modified_time(name)
    for sub in sorted(folders):
        yield from _walk(backend, f"{folder}/{sub}")


@contextmanager
def _translated(name: str) -> Iterator[None]:
    """The backend's failures in this module's two words: FileNotFoundError, StorageError."""
    try:
        yield
    except (FileNotFoundError, StorageError):
        raise
    except OSError as exc:
        raise StorageError(exc.errno, exc.strerror or str(exc), name) from exc
    except ClientError as exc:
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        code = exc.response.get("Error", {}).get("Code", "")
        if status == 404 and code in ("404", "NoSuchKey", "NotFound"):
            raise FileNotFoundError(errno.ENOENT, "No such object", name) from exc
        raise StorageError(errno.EIO, f"the object store refused: {code or status}", name) from exc
    except BotoCoreError as exc:  # unreachable, timed out, no credentials, bad endpoint
        raise StorageError(errno.EIO, f"the object store cannot be reached: {exc}", name) from exc
