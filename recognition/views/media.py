"""Image bytes leave the server only through these views, after the ownership check
in the selector: MEDIA_ROOT has no URL of its own."""

from __future__ import annotations

import logging
from pathlib import Path

from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpRequest
from django.views.decorators.http import require_safe

from .. import storage
from ..engine.images import ImageRejected
from ..models import StoredImage
from ..selectors import upload_get_for_user
from ..thumbnails import THUMBNAIL_CONTENT_TYPE, thumbnail_for

logger = logging.getLogger(__name__)


@login_required
@require_safe
def upload_image(request: HttpRequest, upload_id: int) -> FileResponse:
    upload = upload_get_for_user(user=request.user, upload_id=upload_id, with_results=False)
    stored = upload.stored_image
    path = storage.media_path(stored.path)
    return _file_response(path, storage.content_type(stored.format), upload.original_filename)


@login_required
@require_safe
def upload_thumbnail(request: HttpRequest, upload_id: int) -> FileResponse:
    upload = upload_get_for_user(user=request.user, upload_id=upload_id, with_results=False)
    return stored_image_thumbnail_response(upload.stored_image)


def stored_image_thumbnail_response(stored: StoredImage) -> FileResponse:
    """Also used by the admin, behind its own permission check."""
    try:
        path = thumbnail_for(stored)
    except (OSError, ImageRejected) as exc:
        logger.warning("No thumbnail for image %s: %s", stored.sha256, exc)
        raise Http404("This image is not available.") from None
    return _file_response(path, THUMBNAIL_CONTENT_TYPE, None)


def _file_response(path: Path, content_type: str, filename: str | None) -> FileResponse:
    try:
        handle = path.open("rb")
    except OSError as exc:  # missing, or unreadable: either way the user cannot have it
        logger.warning("Image file %s cannot be read: %s", path, exc)
        raise Http404("This image is not available.") from None
    response = FileResponse(handle, content_type=content_type, filename=filename or "")
    # Private to this user; stored images never change, so browsers may keep them.
    response["Cache-Control"] = "private, max-age=86400"
    # User-supplied bytes: never let a browser run anything they might contain.
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response
