"""The service's one error vocabulary: every failure a person or a client can act on, as
a status, a stable code and a sentence.

Each exception the service raises carries its own `status`, `code` and `message`: the
engine's image refusals and ModelUnavailable, and the two defined here. Infrastructure
failures (the database) are named here too. `describe_error` turns any of them into an
`ErrorAnswer`, and `error_response` into the response: JSON under /api/, a readable page
elsewhere. The API's exception handler, the upload page, the middleware and the error
views all go through these two functions, so they say the same thing.

A message never carries server internals (paths, host names, tracebacks): the details
go to the log, the client learns what is wrong and what an operator should do.
"""

from __future__ import annotations

import errno
import logging
from dataclasses import dataclass
from typing import Any

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.defaultfilters import filesizeformat
from django.template.loader import render_to_string

from .engine.batching import Overloaded
from .engine.classifier import ModelUnavailable
from .engine.images import ImageRejected

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ErrorAnswer:
    status: int
    code: str
    message: str
    # Seconds, sent as Retry-After: when trying again can succeed.
    retry_after: int | None = None


class ServiceError(Exception):
    """A failure the service answers with `status`, `code` and `message`."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:  # a refusal that has several reasons names its own
            self.code = code


class UploadTooLarge(ServiceError):
    status = 413
    code = "too_large"

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        super().__init__(too_large_message(max_bytes))


def too_large_message(max_bytes: int) -> str:
    return f"The file is too large: at most {filesizeformat(max_bytes)} per image is accepted."


_FULL = {errno.ENOSPC, errno.EDQUOT}


class StorageFailed(ServiceError):
    """An image could not be written to the file storage (disk full, read-only, not
    permitted; object store unreachable or refusing). `str()` keeps the system's own words
    for the log; `message` is for the client."""

    def __init__(self, error: OSError):
        self.errno = error.errno
        if self.errno in _FULL:
            self.status, self.code = 507, "storage_full"
            message = (
                "The server has no room left to store images. Nothing was saved; "
                "please try again later or tell the administrator."
            )
        else:
            self.status, self.code = 503, "storage_unavailable"
            message = (
                "The server cannot store images right now (its image storage is not "
                "writable or cannot be reached). Nothing was saved; please try again later "
                "or tell the administrator."
            )
        super().__init__(message)
        self.args = (error.strerror or str(error),)


class StorageUnavailable(ServiceError):
    """A stored file could not be read: the object store is unreachable or refusing, or
    the disk cannot be read. `str()` keeps the system's own words for the log."""

    status = 503
    code = "storage_unavailable"

    def __init__(self, error: OSError):
        super().__init__(
            "The server cannot read its stored images right now. Please try again in a "
            "moment, or tell the administrator if it lasts."
        )
        self.args = (error.strerror or str(error),)


DATABASE_UNAVAILABLE = ErrorAnswer(
    503,
    "database_unavailable",
    "The database is unavailable right now. Nothing was saved; please try again in a moment.",
)
# What Django's own error views answer, in this vocabulary (their pages are templates).
BAD_REQUEST = ErrorAnswer(400, "bad_request", "The request could not be understood.")
PERMISSION_DENIED = ErrorAnswer(403, "permission_denied", "Permission denied.")
NO_ENDPOINT = ErrorAnswer(404, "not_found", "No API endpoint at this URL.")
SERVER_ERROR = ErrorAnswer(500, "server_error", "Something went wrong on our side.")


def describe_error(exc: BaseException) -> ErrorAnswer | None:
    """The answer for a failure of the service's own vocabulary; None for anything else
    (a bug, or an exception a framework maps itself)."""
    # OperationalError: cannot connect, connection lost, locked; InterfaceError: the
    # connection object itself is closed or broken.
    if isinstance(exc, (OperationalError, InterfaceError)):
        return DATABASE_UNAVAILABLE
    if isinstance(exc, Overloaded):
        return ErrorAnswer(exc.status, exc.code, exc.message, retry_after=exc.retry_after)
    if isinstance(exc, (ServiceError, ImageRejected, ModelUnavailable)):
        return ErrorAnswer(exc.status, exc.code, exc.message)
    return None


def log_server_side(answer: ErrorAnswer, exc: BaseException, request: HttpRequest) -> None:
    """The detail of a failure on our side (which file, which host, the system's own
    words) goes to the operator's log, since the client is not told it."""
    # Shedding is the server working as meant, not a failure: one line per shed request
    # under a burst would bury the log.
    if answer.status >= 500 and answer.retry_after is None:
        logger.error("%s on %s: %s", answer.code, request.path, exc)


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


# Pages for answers that have a template of their own; the rest share one.
_PAGE_TEMPLATES = {413: "413.html"}
_DEFAULT_PAGE_TEMPLATE = "unavailable.html"


def error_response(request: HttpRequest, answer: ErrorAnswer) -> HttpResponse:
    """JSON under /api/, else a page. Rendered without the request: the database, the
    session or the auth middleware may be what is missing."""
    if is_api_request(request):
        response = JsonResponse(error_body(answer.code, answer.message), status=answer.status)
    else:
        template = _PAGE_TEMPLATES.get(answer.status, _DEFAULT_PAGE_TEMPLATE)
        context = {"error": answer, "import_request": request.path.startswith("/imports/")}
        response = HttpResponse(render_to_string(template, context), status=answer.status)
    if answer.retry_after is not None:
        response["Retry-After"] = str(answer.retry_after)
    return response


def is_api_request(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")
