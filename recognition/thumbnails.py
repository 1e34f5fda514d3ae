"""Small JPEG previews, made once per stored image on first request and then reused."""

from __future__ import annotations

import io
from pathlib import Path

from django.conf import settings
from PIL import Image

from . import storage
from .engine.images import decode_image
from .models import StoredImage

THUMBNAIL_SIZE = 256
THUMBNAIL_CONTENT_TYPE = "image/jpeg"


def thumbnail_for(stored: StoredImage) -> Path:
    """The thumbnail's path, creating it if needed. Raises OSError when the original is
    missing and ImageRejected when it can no longer be decoded."""
    path = storage.media_path(storage.thumbnail_relative_path(stored.sha256))
    if path.exists():
        return path
    data = storage.media_path(stored.path).read_bytes()
    image = decode_image(
        data, max_pixels=settings.RECOGNITION_MAX_PIXELS, min_side=THUMBNAIL_SIZE
    ).image
    image.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85, optimize=True)
    # Two first requests may both render it; the atomic rename makes that harmless.
    storage.write_atomically(path, buffer.getvalue())
    return path
