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

from ..engine.images import CorruptImage, EmptyImage, ImageRejected, NotAnImage, TooManyPixels
from ..engine.classifier import ModelUnavailable
from ..faults import describe_fault
from ..services import UploadTooLarge

logger = logging.getLogger(__name__)

IMAGE_STATUS: dict[type[ImageRejected], int] = {
    EmptyImage: status.HTTP_400_BAD_REQUEST,
    NotAnImage: status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
    CorruptImage: status.HTTP_400_BAD_REQUEST,
    TooManyPixels: status.HTTP_400_BAD_REQUEST,
}

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


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    set_rollback()  # as DRF's own handler does, for ATOMIC_REQUESTS
    # Database down, disk full, media unwritable: say so, with a status worth retrying.
    fault = describe_fault(exc)
    if fault is not None:
        logger.error("%s: %s", fault.code, exc)
        return _response(fault.status, fault.code, fault.message)
    if isinstance(exc, ImageRejected):
        return _response(IMAGE_STATUS.get(type(exc), 400), exc.code, exc.message)
    if isinstance(exc, UploadTooLarge):
        return _response(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, exc.code, exc.message)
    if isinstance(exc, ModelUnavailable):
        return _response(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "model_unavailable",
            f"Image recognition is unavailable: {exc}",
        )
    if isinstance(exc, (Http404, ObjectDoesNotExist)):
        return _response(status.HTTP_404_NOT_FOUND, "not_found", str(exc) or "Not found.")
    if isinstance(exc, PermissionDenied):
        return _response(status.HTTP_403_FORBIDDEN, "permission_denied", "Permission denied.")
    if isinstance(exc, RequestDataTooBig):
        return _response(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, "too_large", str(exc))
    if isinstance(exc, SuspiciousOperation):
        return _response(status.HTTP_400_BAD_REQUEST, "bad_request", str(exc))
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
    return _response(
        status.HTTP_500_INTERNAL_SERVER_ERROR, "server_error", "Something went wrong on our side."
    )


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
