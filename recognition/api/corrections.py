"""The owner's correction of one of their classifications: PUT says what the picture
really shows, DELETE withdraws it. recognition/corrections.py does the work."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from ..corrections import correction_remove, correction_set
from .errors import ErrorOutputSerializer

TAG = "classifications"


class CorrectionOutputSerializer(serializers.Serializer):
    label = serializers.CharField(help_text="What the owner says the picture shows.")
    index = serializers.IntegerField(
        allow_null=True,
        help_text="The model category's position in its output; null for a label of the "
        "owner's own words.",
    )
    status = serializers.CharField(help_text="pending, accepted or rejected (by a reviewer).")
    created_at = serializers.DateTimeField()

    class Meta:
        ref_name = "Correction"


class ClassificationCorrectionApi(APIView):
    class InputSerializer(serializers.Serializer):
        # Cleaned and judged by the correction rules, so every refusal has their words.
        label = serializers.CharField(
            allow_blank=True,
            trim_whitespace=False,
            help_text="One of the model's category names (any case), or your own words: "
            "1–100 characters once trimmed.",
        )

        class Meta:
            ref_name = "CorrectionInput"

    @extend_schema(
        tags=[TAG],
        summary="Correct one of your classifications",
        description=(
            "Say what the picture really shows. A label naming one of the active model's "
            "categories is that category; any other is a new label of your own. Replaces "
            "an earlier correction, which goes back to `pending` review."
        ),
        request=InputSerializer,
        responses={
            200: CorrectionOutputSerializer,
            **{code: OpenApiResponse(ErrorOutputSerializer) for code in (400, 401, 404, 503)},
        },
    )
    def put(self, request: Request, upload_id: int) -> Response:
        serializer = ClassificationCorrectionApi.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        correction = correction_set(
            user=request.user, upload_id=upload_id, label=serializer.validated_data["label"]
        )
        return Response(CorrectionOutputSerializer(correction).data)

    @extend_schema(
        tags=[TAG],
        summary="Withdraw your correction of a classification",
        description="Answers 204 whether or not there was a correction.",
        responses={
            204: None,
            **{code: OpenApiResponse(ErrorOutputSerializer) for code in (401, 404, 503)},
        },
    )
    def delete(self, request: Request, upload_id: int) -> Response:
        correction_remove(user=request.user, upload_id=upload_id)
        return Response(status=status.HTTP_204_NO_CONTENT)
