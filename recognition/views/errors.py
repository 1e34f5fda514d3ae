"""Error pages: JSON under /api/, friendly HTML everywhere else."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views import defaults

from ..errors import (
    BAD_REQUEST,
    NO_ENDPOINT,
    PERMISSION_DENIED,
    SERVER_ERROR,
    error_response,
    is_api_request,
)


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    if is_api_request(request):
        return error_response(request, BAD_REQUEST)
    return defaults.bad_request(request, exception)


def permission_denied(request: HttpRequest, exception: Exception) -> HttpResponse:
    if is_api_request(request):
        return error_response(request, PERMISSION_DENIED)
    return defaults.permission_denied(request, exception)


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if is_api_request(request):
        return error_response(request, NO_ENDPOINT)
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    if is_api_request(request):
        return error_response(request, SERVER_ERROR)
    return defaults.server_error(request)
