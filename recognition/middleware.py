"""Refuse an oversized request from its Content-Length, before a byte of it is read;
answer a view's failure in the service's error vocabulary; give every page a
Content-Security-Policy."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import reverse

from .errors import UploadTooLarge, describe_error, error_response, log_server_side

# Everything the pages and the Swagger UI load comes from this server. Inline styles are
# allowed (confidence bars, Swagger UI); inline scripts are not. Uploaded images are
# served with their own, stricter policy, which is kept.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "img-src 'self' data: blob:",
        "style-src 'self' 'unsafe-inline'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)

# Room for the multipart boundaries, part headers and the small form fields around a file.
MULTIPART_ALLOWANCE = 64 * 1024


class RejectOversizedBodyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        length = _content_length(request)
        if length is None:
            return self.get_response(request)
        if request.path_info in (reverse("api:imports"), reverse("imports")):
            # A bulk import (API or page) carries many pictures; its own cap (imports.py).
            from .imports import ImportTooLarge

            max_bytes = settings.RECOGNITION_IMPORT_MAX_ARCHIVE_BYTES
            if length > max_bytes + MULTIPART_ALLOWANCE:
                return error_response(request, describe_error(ImportTooLarge(max_bytes)))
            return self.get_response(request)
        max_bytes = settings.RECOGNITION_MAX_UPLOAD_BYTES
        if length > max_bytes + MULTIPART_ALLOWANCE:
            return error_response(request, describe_error(UploadTooLarge(max_bytes)))
        return self.get_response(request)


def _content_length(request: HttpRequest) -> int | None:
    try:
        return int(request.META.get("CONTENT_LENGTH") or "")
    except ValueError:
        return None  # absent or malformed: Django then reads no body at all


class ErrorResponseMiddleware:
    """A view that raised an error of the service's vocabulary (the database down, the
    disk full, ...) answers with its status and a readable page, or JSON under /api/ for
    what DRF's own handler does not see, not with the generic 500."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exc: Exception) -> HttpResponse | None:
        answer = describe_error(exc)
        if answer is None:
            return None
        log_server_side(answer, exc, request)
        return error_response(request, answer)


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        return response
