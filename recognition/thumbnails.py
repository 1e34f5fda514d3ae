"""Small JPEG previews: rendered by a background task (tasks.make_thumbnail) from the
stored original, kept in the storage next to it, and served by the thumbnail view. Until
one exists the view answers with PLACEHOLDER_SVG."""

from __future__ import annotations

import io

from django.conf import settings
from PIL import Image

from . import storage
from .engine.images import decode_image
from .models import StoredImage

THUMBNAIL_SIZE = 256
THUMBNAIL_CONTENT_TYPE = "image/jpeg"
PLACEHOLDER_CONTENT_TYPE = "image/svg+xml"
# What an <img> shows while the thumbnail is being made: a neutral square, no script.
PLACEHOLDER_SVG = (
    f'<svg xmlns="http://www.w3.org/2000/svg" width="{THUMBNAIL_SIZE}" height="{THUMBNAIL_SIZE}" '
    f'viewBox="0 0 {THUMBNAIL_SIZE} {THUMBNAIL_SIZE}" role="img" aria-label="Preview being made">'
    '<rect width="100%" height="100%" fill="#eef0f3"/>'
    '<text x="50%" y="50%" fill="#6b7280" font-family="sans-serif" font-size="20" '
    'text-anchor="middle" dominant-baseline="middle">Preview coming…</text></svg>'
).encode()


def render(stored: StoredImage) -> bytes:
    """The thumbnail of `stored` as JPEG bytes. Raises FileNotFoundError when the original
    is missing, storage.StorageError when the storage fails, ImageRejected when the
    original cannot be decoded (any more)."""
    with storage.open_file(stored.path) as original:
        data = original.read()  # at most RECOGNITION_MAX_UPLOAD_BYTES: it was uploaded
    limit = settings.RECOGNITION_MAX_PIXELS
    image = decode_image(data, max_pixels=limit, min_side=THUMBNAIL_SIZE).image
    image.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85, optimize=True)
    return buffer.getvalue()


def thumbnail_name(stored: StoredImage) -> str:
    return storage.thumbnail_name(stored.sha256)
