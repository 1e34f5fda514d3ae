"""The user's history as a download: every upload, filtered as the history page filters."""

from __future__ import annotations

from django.http import HttpResponseBase
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.views import APIView

from .. import export
from ..forms import HistorySearchForm
from ..selectors import upload_list_for_user
from .classifications import UNCERTAIN_PARAMETER
from .errors import ErrorOutputSerializer

TAG = "classifications"


class _FormatIsAParameter(DefaultContentNegotiation):
    """`format` names the export's encoding here, not one of DRF's renderers (DRF would
    answer ?format=csv with 404), and errors are JSON whatever the Accept header asks:
    the export itself is streamed by the view, not rendered."""

    def select_renderer(
        self, request: Request, renderers: list[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        return renderers[0], renderers[0].media_type


class ClassificationExportApi(APIView):
    renderer_classes = [JSONRenderer]
    content_negotiation_class = _FormatIsAParameter

    class InputSerializer(serializers.Serializer):
        format = serializers.ChoiceField(
            choices=list(export.FORMATS), default=export.DEFAULT_FORMAT
        )

    @extend_schema(
        tags=[TAG],
        summary="Download your classifications (CSV or JSON Lines)",
        description=(
            "Every upload of yours that matches the filters, most recently uploaded first: "
            "file name, upload times, the image's SHA-256, size and format, the model's "
            "name, version and weights SHA-256, and the top 10 predictions. CSV has columns "
            "label_1, index_1, score_1 … label_10, index_10, score_10; a text cell starting "
            "with =, +, -, @, a tab or a carriage return is prefixed with ' so that "
            "spreadsheets show it as text. JSON Lines has one object per line with "
            "`predictions: [{rank, label, index, score}]`. Streamed: any size of history."
        ),
        parameters=[
            OpenApiParameter(
                "format",
                {"type": "string", "enum": list(export.FORMATS), "default": export.DEFAULT_FORMAT},
                description="csv (default) or jsonl.",
            ),
            OpenApiParameter(
                "label",
                {"type": "string", "maxLength": 200},
                description=(
                    "Only uploads with this text in a top-3 label (the history page calls it q)."
                ),
            ),
            OpenApiParameter(
                "uploaded_from",
                OpenApiTypes.DATE,
                description="Only uploads last uploaded on this day or later.",
            ),
            OpenApiParameter(
                "uploaded_until",
                OpenApiTypes.DATE,
                description=(
                    "Only uploads last uploaded on this day or earlier (not before uploaded_from)."
                ),
            ),
            OpenApiParameter(
                "min_confidence",
                {"type": "integer", "minimum": 0, "maximum": 100},
                description="Only uploads whose top prediction is at least this sure, in %.",
            ),
            UNCERTAIN_PARAMETER,
        ],
        responses={
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="format=csv"),
            (200, "application/x-ndjson"): OpenApiResponse(
                OpenApiTypes.STR, description="format=jsonl"
            ),
            (400, "application/json"): OpenApiResponse(ErrorOutputSerializer),
            (401, "application/json"): OpenApiResponse(ErrorOutputSerializer),
            (503, "application/json"): OpenApiResponse(ErrorOutputSerializer),
        },
    )
    def get(self, request: Request) -> HttpResponseBase:
        params = ClassificationExportApi.InputSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        data = request.query_params.copy()
        if "label" in data:  # the list endpoint's name for the history page's q
            data.setlist("q", data.getlist("label"))
        # The history page's own form: the same filter rules, here with an error for any
        # invalid one instead of leaving it out.
        search = HistorySearchForm(data)
        if not search.is_valid():
            raise exceptions.ValidationError(
                {
                    "label" if name == "q" else name: list(errors)
                    for name, errors in search.errors.items()
                }
            )
        uploads = upload_list_for_user(user=request.user, **search.filters())
        return export.export_response(uploads, format=params.validated_data["format"])
