"""Files in the storage (local disk or object store) that no stored image refers to, and
stored images whose file is gone: what a killed worker, a database lost mid-upload or a
hand-edited store leaves behind.

Only files older than an hour count as orphans: a younger one may belong to an upload that
is about to commit its row (the file is written first), so it is left alone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.utils import timezone

from . import storage
from .models import StoredImage
from .storage import StoredFile

logger = logging.getLogger(__name__)

MIN_AGE_SECONDS = 3600
SCANNED_FOLDERS = ("images", "thumbnails")


@dataclass
class OrphanScan:
    orphans: list[StoredFile] = field(default_factory=list)  # unreferenced, old enough to go
    recent: list[StoredFile] = field(default_factory=list)  # unreferenced, maybe in flight
    missing: list[StoredImage] = field(default_factory=list)  # rows whose image file is gone

    @property
    def orphan_bytes(self) -> int:
        return sum(file.size for file in self.orphans)


def orphans_find(*, now: datetime | None = None) -> OrphanScan:
    """Raises storage.StorageError when the storage cannot be listed."""
    now = now or _now()
    scan = OrphanScan()
    # The rows first, then the listing: an image's file is written before its row, so
    # every row read here had its file in place before the listing began.
    rows = list(StoredImage.objects.order_by("pk").iterator())
    referenced = {name for stored in rows for name in (stored.path, _thumbnail(stored))}
    listed = {
        file.name: file for folder in SCANNED_FOLDERS for file in storage.list_files(folder)
    }
    scan.missing = [stored for stored in rows if stored.path not in listed]
    min_age = timedelta(seconds=MIN_AGE_SECONDS)
    for name in sorted(listed):
        if name in referenced:
            continue
        # Temporary files of interrupted writes are never referenced, like any orphan.
        file = listed[name]
        (scan.orphans if now - file.modified >= min_age else scan.recent).append(file)
    return scan


def orphans_remove(scan: OrphanScan) -> list[StoredFile]:
    """Remove the scan's orphans; the ones actually removed."""
    removed = []
    for file in scan.orphans:
        # Files are named by their hash: an upload of the same bytes since the scan may
        # have adopted this one (it found the file there and did not write its own).
        sha256 = file.name.rsplit("/", 1)[-1].split(".")[0]
        if sha256 and StoredImage.objects.filter(sha256=sha256).exists():
            continue
        try:
            storage.delete(file.name)
        except storage.StorageError as exc:
            logger.warning("Could not remove %s: %s", file.name, exc)
            continue
        removed.append(file)
    return removed


def _thumbnail(stored: StoredImage) -> str:
    return storage.thumbnail_name(stored.sha256)


def _now() -> datetime:
    # One place to read the clock: tests age the files by moving it forward.
    return timezone.now()
