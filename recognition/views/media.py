"""Image bytes leave the server only through these views, after the ownership check
in the selector: the file storage has no URL of its own (no MEDIA_URL, private objects,
no presigned redirects), and a file is streamed from it, never read whole."""

from __future__ import annotations

import logging
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.views.decorators.http import require_safe

from .. import storage, tasks, thumbnails
from ..errors import StorageUnavailable
from ..models import StoredImage, ThumbnailState
from ..selectors import upload_get_for_user

logger = logging.getLogger(__name__)


@login_required
@require_safe
def upload_image(request: HttpRequest, upload_id: int) -> FileResponse:
    upload = upload_get_for_user(user=request.user, upload_id=upload_id, with_results=False)
    stored = upload.stored_image
    return file_response(stored.path, storage.content_type(stored.format), upload.original_filename)


@login_required
@require_safe
def upload_thumbnail(request: HttpRequest, upload_id: int) -> HttpResponse:
    upload = upload_get_for_user(user=request.user, upload_id=upload_id, with_results=False)
    return stored_image_thumbnail_response(upload.stored_image)


def stored_image_thumbnail_response(stored: StoredImage) -> HttpResponse:
    """The stored thumbnail once the worker has made it; a placeholder until then, never
    cached; 404 when the original cannot be made into one. Also used by the admin,
    behind its own permission check."""
    if stored.thumbnail_state == ThumbnailState.FAILED:
        raise Http404("This image has no preview.")
    if stored.thumbnail_state == ThumbnailState.READY:
        try:
            handle = storage.open_file(thumbnails.thumbnail_name(stored))
        except FileNotFoundError:
            # Removed behind our back: made again, as for a new image.
            logger.warning("Thumbnail of image %s is missing; queued again", stored.sha256)
            StoredImage.objects.filter(pk=stored.pk, thumbnail_state=ThumbnailState.READY).update(
                thumbnail_state=ThumbnailState.PENDING, thumbnail_claimed_at=None
            )
            tasks.queue_thumbnail(stored.pk)
        except OSError as exc:  # storage.StorageError: the placeholder, and try next time
            logger.warning("Thumbnail of image %s cannot be read: %s", stored.sha256, exc)
        else:
            response = FileResponse(handle, content_type=thumbnails.THUMBNAIL_CONTENT_TYPE)
            # Private to this user; a thumbnail never changes, so browsers may keep it.
            response["Cache-Control"] = "private, max-age=86400"
            response["Content-Security-Policy"] = "default-src 'none'; sandbox"
            return response
    placeholder = HttpResponse(
        thumbnails.PLACEHOLDER_SVG, content_type=thumbnails.PLACEHOLDER_CONTENT_TYPE
    )
    placeholder["Cache-Control"] = "no-store"  # the real one replaces it on a later view
    placeholder["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'; sandbox"
    return placeholder


def file_response(name: str, content_type: str, filename: str | None) -> FileResponse:
    try:
        handle = storage.open_file(name)
    except FileNotFoundError as exc:  # a row never points at nothing, unless hand-edited
        logger.warning("Image file %s is missing: %s", name, exc)
        raise Http404("This image is not available.") from None
    except storage.StorageError as exc:  # the store is away: try again later, not "gone"
        raise StorageUnavailable(exc) from exc
    response = FileResponse(handle, content_type=content_type, filename=filename or "")
    size = getattr(handle, "size", None)  # an object store's stream has no seek
    if "Content-Length" not in response and size is not None:
        response["Content-Length"] = size
    # Private to this user; stored images never change, so browsers may keep them.
    response["Cache-Control"] = "private, max-age=86400"
    # User-supplied bytes: never let a browser run anything they might contain.
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response
