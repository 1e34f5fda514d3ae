"""Refuse an oversized request from its Content-Length, before a byte of it is read;
give every page a Content-Security-Policy."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string

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
        max_bytes = settings.RECOGNITION_MAX_UPLOAD_BYTES
        length = _content_length(request)
        if length is not None and length > max_bytes + MULTIPART_ALLOWANCE:
            return _too_large(request, max_bytes)
        return self.get_response(request)


def _content_length(request: HttpRequest) -> int | None:
    try:
        return int(request.META.get("CONTENT_LENGTH") or "")
    except ValueError:
        return None  # absent or malformed: Django then reads no body at all


def _too_large(request: HttpRequest, max_bytes: int) -> HttpResponse:
    # Imported here: the services pull in the engine, which this module need not load.
    from .services import UploadTooLarge

    error = UploadTooLarge(max_bytes)
    if request.path.startswith("/api/"):
        return JsonResponse({"error": {"code": error.code, "message": error.message}}, status=413)
    # Rendered without the request: the auth and session middleware have not run yet.
    return HttpResponse(render_to_string("413.html", {"message": error.message}), status=413)


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        return response
