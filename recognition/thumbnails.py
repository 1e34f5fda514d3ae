"""Small JPEG previews, made once per stored image on first request and then reused."""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from pathlib import Path

from django.conf import settings
from PIL import Image

from . import storage
from .engine.images import ImageRejected, decode_image
from .models import StoredImage

THUMBNAIL_SIZE = 256
THUMBNAIL_CONTENT_TYPE = "image/jpeg"
# Originals that could not be made into a thumbnail, with the size and modification time
# they had then: decoding a broken 40-megapixel file again on every page view would cost
# as much each time, while a file rewritten since (same name, new stat) is tried afresh.
_FAILED_MAX = 1024
_failed: OrderedDict[str, tuple[tuple[int, int], str]] = OrderedDict()
_failed_lock = threading.Lock()


def thumbnail_for(stored: StoredImage) -> Path:
    """The thumbnail's path, creating it if needed. Raises OSError when the original is
    missing and ImageRejected when it can no longer be decoded."""
    path = storage.media_path(storage.thumbnail_relative_path(stored.sha256))
    if path.exists():
        return path
    original = storage.media_path(stored.path)
    status = original.stat()  # OSError when the original is missing
    signature = (status.st_size, status.st_mtime_ns)
    with _failed_lock:
        failed = _failed.get(stored.sha256)
    if failed is not None and failed[0] == signature:
        # A new exception each time: one shared instance would collect every thread's
        # traceback.
        raise ImageRejected(failed[1])
    try:
        data = original.read_bytes()
        limit = settings.RECOGNITION_MAX_PIXELS
        image = decode_image(data, max_pixels=limit, min_side=THUMBNAIL_SIZE).image
    except ImageRejected as exc:
        with _failed_lock:
            _failed[stored.sha256] = (signature, exc.message)
            while len(_failed) > _FAILED_MAX:
                _failed.popitem(last=False)
        raise
    image.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85, optimize=True)
    # Two first requests may both render it; the atomic rename makes that harmless.
    storage.write_atomically(path, buffer.getvalue())
    return path
