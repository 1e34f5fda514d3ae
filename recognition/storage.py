"""Where image files live under MEDIA_ROOT, and how they are written: whole or not at all.

Paths derive from the SHA-256 only, so a user's filename never reaches the filesystem
and the same bytes are stored once.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from django.conf import settings

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


def image_relative_path(sha256: str, image_format: str) -> str:
    extension = FORMATS.get(image_format, ("bin", ""))[0]
    return f"images/{sha256[:2]}/{sha256[2:4]}/{sha256}.{extension}"


def thumbnail_relative_path(sha256: str) -> str:
    return f"thumbnails/{sha256[:2]}/{sha256}.jpg"


def content_type(image_format: str) -> str:
    return FORMATS.get(image_format, ("bin", "application/octet-stream"))[1]


def media_path(relative: str) -> Path:
    # Read at call time: tests point MEDIA_ROOT at a fresh folder per test.
    return Path(settings.MEDIA_ROOT) / relative


def write_if_missing(path: Path, data: bytes) -> bool:
    """Write `data` to `path` atomically unless it is already there; True if written."""
    if path.exists():
        return False
    write_atomically(path, data)
    return True


def write_atomically(path: Path, data: bytes) -> None:
    """Readers see the old file or the complete new one, never a partial write."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, settings.FILE_UPLOAD_PERMISSIONS or 0o640)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def remove_quietly(path: Path) -> None:
    """Remove a file that is no longer referenced; a failure only leaves garbage behind."""
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        logger.warning("Could not remove %s: %s", path, exc)


def _fsync_directory(directory: Path) -> None:
    # Makes the rename itself durable; not possible on every platform.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
