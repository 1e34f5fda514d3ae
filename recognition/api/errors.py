"""Every API failure, whatever raised it, becomes `{"error": {"code", "message"}}` with
the status a client can act on: never an HTML page, never a 500 for bad input."""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import (
    ObjectDoesNotExist,
    PermissionDenied,
    RequestDataTooBig,
    SuspiciousOperation,
)
from django.http import Http404
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import set_rollback

from ..errors import BAD_REQUEST, PERMISSION_DENIED, SERVER_ERROR, describe_error, error_body, log_server_side

logger = logging.getLogger(__name__)

# DRF's own exception classes -> our codes; the rest use DRF's default_code.
DRF_CODES: dict[type[exceptions.APIException], str] = {
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.AuthenticationFailed: "authentication_failed",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.ParseError: "malformed_request",
}


class ErrorOutputSerializer(serializers.Serializer):
    """The body of every API error (for the OpenAPI schema)."""

    class ErrorSerializer(serializers.Serializer):
        code = serializers.CharField(help_text="Stable, for programs: e.g. corrupt_image.")
        message = serializers.CharField(help_text="A sentence for people, saying what to do.")

        class Meta:
            ref_name = "ErrorDetail"

    error = ErrorSerializer()

    class Meta:
        ref_name = "Error"


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    set_rollback()  # as DRF's own handler does, for ATOMIC_REQUESTS
    # The service's own vocabulary: bad images, limits, no model, database or disk down.
    answer = describe_error(exc)
    if answer is not None:
        log_server_side(answer, exc, context["request"])
        response = _response(answer.status, answer.code, answer.message)
        if answer.retry_after is not None:
            response["Retry-After"] = str(answer.retry_after)
        return response
    if isinstance(exc, (Http404, ObjectDoesNotExist)):
        return _response(status.HTTP_404_NOT_FOUND, "not_found", str(exc) or "Not found.")
    if isinstance(exc, PermissionDenied):
        answer = PERMISSION_DENIED
        return _response(answer.status, answer.code, answer.message)
    if isinstance(exc, RequestDataTooBig):
        message = "The request's form fields are too large."
        return _response(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, "too_large", message)
    if isinstance(exc, SuspiciousOperation):
        # Its text may echo the request's host or the server's settings: log it only.
        logger.warning("Suspicious API request: %s", exc)
        return _response(status.HTTP_400_BAD_REQUEST, "bad_request", BAD_REQUEST.message)
    if isinstance(exc, exceptions.ValidationError):
        return _validation_response(exc)
    if isinstance(exc, exceptions.APIException):
        code = DRF_CODES.get(type(exc), exc.default_code)
        response = _response(exc.status_code, code, _first_message(exc.detail))
        # What DRF's own handler would add: the auth scheme on 401, the wait on 429.
        if getattr(exc, "auth_header", None):
            response["WWW-Authenticate"] = exc.auth_header
        if getattr(exc, "wait", None):
            response["Retry-After"] = str(int(exc.wait))
        return response
    logger.exception("Unhandled API error", exc_info=exc)
    return _response(SERVER_ERROR.status, SERVER_ERROR.code, SERVER_ERROR.message)


def _response(status_code: int, code: str, message: str, **extra: Any) -> Response:
    return Response(error_body(code, message, **extra), status=status_code)


def _validation_response(exc: exceptions.ValidationError) -> Response:
    detail = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
    fields = {name: [str(m) for m in _as_list(messages)] for name, messages in detail.items()}
    code = "missing_field" if "required" in _as_list(exc.get_codes()) else "invalid_input"
    message = " ".join(
        f"{msgs[0]}" if name == "non_field_errors" else f"{name}: {msgs[0]}"
        for name, msgs in fields.items()
        if msgs
    )
    return _response(status.HTTP_400_BAD_REQUEST, code, message, fields=fields)


def _first_message(detail: Any) -> str:
    while isinstance(detail, (list, dict)) and detail:
        detail = next(iter(detail.values())) if isinstance(detail, dict) else detail[0]
    return str(detail)


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [item for inner in value.values() for item in _as_list(inner)]
    return list(value) if isinstance(value, list) else [value]
