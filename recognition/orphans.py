"""Files under MEDIA_ROOT that no stored image refers to, and stored images whose file is
gone: what a killed worker, a database lost mid-upload or a hand-edited disk leaves behind.

Only files older than an hour count as orphans: a younger one may belong to an upload that
is about to commit its row (the file is written first), so it is left alone.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

from . import storage
from .models import StoredImage

logger = logging.getLogger(__name__)

MIN_AGE_SECONDS = 3600
SCANNED_FOLDERS = ("images", "thumbnails")


@dataclass
class OrphanScan:
    orphans: list[Path] = field(default_factory=list)  # unreferenced, old enough to go
    recent: list[Path] = field(default_factory=list)  # unreferenced, maybe an upload in flight
    missing: list[StoredImage] = field(default_factory=list)  # rows whose image file is gone

    @property
    def orphan_bytes(self) -> int:
        return sum(_size(path) for path in self.orphans)


def orphans_find(*, now: float | None = None) -> OrphanScan:
    root = Path(settings.MEDIA_ROOT)
    now = time.time() if now is None else now
    referenced: set[Path] = set()
    scan = OrphanScan()
    for stored in StoredImage.objects.order_by("pk").iterator():
        image = storage.media_path(stored.path)
        referenced.add(image)
        referenced.add(storage.media_path(storage.thumbnail_relative_path(stored.sha256)))
        if not image.is_file():
            scan.missing.append(stored)
    for folder in SCANNED_FOLDERS:
        for path in sorted((root / folder).rglob("*")):
            if path in referenced or not path.is_file():
                continue
            # Temporary files of interrupted writes are never referenced, like any orphan.
            old = now - _mtime(path, default=now) >= MIN_AGE_SECONDS
            (scan.orphans if old else scan.recent).append(path)
    return scan


def orphans_remove(scan: OrphanScan) -> list[Path]:
    """Remove the scan's orphans; the ones actually removed."""
    removed = []
    for path in scan.orphans:
        # Files are named by their hash: an upload of the same bytes since the scan may
        # have adopted this one (it found the file there and did not write its own).
        if StoredImage.objects.filter(sha256=path.name.split(".")[0]).exists():
            continue
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            logger.warning("Could not remove %s: %s", path, exc)
            continue
        removed.append(path)
    return removed


def _mtime(path: Path, *, default: float) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return default


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
