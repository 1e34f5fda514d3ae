"""Failures of what the service stands on — the database, the disk — as answers a person
or a client can act on: which status, which code, which sentence. Pages and the API both
ask `describe_fault`, so they say the same thing."""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable
from dataclasses import dataclass

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string

logger = logging.getLogger(__name__)


class StorageFailed(Exception):
    """An image could not be written under MEDIA_ROOT (full, read-only, not permitted)."""

    def __init__(self, error: OSError):
        self.errno = error.errno
        super().__init__(error.strerror or str(error))


@dataclass(frozen=True)
class Fault:
    status: int
    code: str
    message: str


DATABASE_UNAVAILABLE = Fault(
    503,
    "database_unavailable",
    "The database is unavailable right now. Nothing was saved; please try again in a moment.",
)
STORAGE_FULL = Fault(
    507,
    "storage_full",
    "The server has no room left to store images. Nothing was saved; "
    "please try again later or tell the administrator.",
)
STORAGE_UNAVAILABLE = Fault(
    503,
    "storage_unavailable",
    "The server cannot store images right now (its image folder is not writable). "
    "Nothing was saved; please tell the administrator.",
)
_FULL = {errno.ENOSPC, errno.EDQUOT}


def describe_fault(exc: BaseException) -> Fault | None:
    """The answer for an infrastructure failure; None for anything else."""
    # OperationalError: cannot connect, connection lost, locked; InterfaceError: the
    # connection object itself is closed or broken.
    if isinstance(exc, (OperationalError, InterfaceError)):
        return DATABASE_UNAVAILABLE
    if isinstance(exc, StorageFailed):
        return STORAGE_FULL if exc.errno in _FULL else STORAGE_UNAVAILABLE
    return None


class FaultResponseMiddleware:
    """A view that hit a fault answers with its status and a readable page (JSON under
    /api/, for what DRF's own handler does not see), not with the generic 500."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exc: Exception) -> HttpResponse | None:
        fault = describe_fault(exc)
        if fault is None:
            return None
        logger.error("%s on %s: %s", fault.code, request.path, exc)
        if request.path.startswith("/api/"):
            body = {"error": {"code": fault.code, "message": fault.message}}
            return JsonResponse(body, status=fault.status)
        # Rendered without the request: its user and session need the database.
        html = render_to_string("unavailable.html", {"fault": fault})
        return HttpResponse(html, status=fault.status)
