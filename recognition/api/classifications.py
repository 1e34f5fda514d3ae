"""The user's classifications: upload one, list them, fetch one, delete one.

One APIView per operation; two operations that share a URL are joined at the bottom.
Each method names its own serializers explicitly, so the joined classes cannot mix them up.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
)
from rest_framework import serializers, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import active_model
from ..models import Upload
from ..selectors import upload_get_for_user, upload_list_for_user
from ..services import DEFAULT_TOP_K, MAX_TOP_K, upload_classify, upload_delete
from ..throttling import UPLOAD_THROTTLES
from ..corrections import correction_of
from ..uncertainty import UNCERTAIN_CHOICES, uncertain_filter
from .corrections import CorrectionOutputSerializer
from .errors import ErrorOutputSerializer

TAG = "classifications"


def _errors(*codes: int) -> dict[int, OpenApiResponse]:
    return {code: OpenApiResponse(ErrorOutputSerializer) for code in codes}


class PredictionOutputSerializer(serializers.Serializer):
    label = serializers.CharField()
    index = serializers.IntegerField(help_text="The category's position in the model output.")
    score = serializers.FloatField(help_text="Softmax probability, 0 to 1.")

    class Meta:
        ref_name = "Prediction"


class UploadOutputSerializer(serializers.Serializer):
    """One of the user's uploads, as every endpoint returns it. Times are the user's own,
    never those of the shared image, so nothing tells whether others uploaded it too."""

    class ImageSerializer(serializers.Serializer):
        sha256 = serializers.CharField()
        width = serializers.IntegerField()
        height = serializers.IntegerField()
        format = serializers.CharField()
        bytes = serializers.IntegerField(source="byte_size")

        class Meta:
            ref_name = "ImageFacts"

    class ModelSerializer(serializers.Serializer):
        name = serializers.CharField(source="model_name")
        version = serializers.CharField(source="model_version")
        current = serializers.SerializerMethodField(
            help_text="False when an older model made this classification: the active "
            "model has not classified this image yet."
        )

        class Meta:
            ref_name = "ModelUsed"

        def get_current(self, classification: Any) -> bool:
            # Read once per response, not per row: the context is shared by every row.
            context = self.context
            if "_served_model_key" not in context:
                context["_served_model_key"] = active_model.served_key()
            served = context["_served_model_key"]
            return served is None or classification.model_key == served

    id = serializers.IntegerField()
    filename = serializers.CharField(source="original_filename")
    image = ImageSerializer(source="stored_image")
    model = ModelSerializer(source="classification")
    predictions = serializers.SerializerMethodField()
    uncertain = serializers.BooleanField(
        source="classification.uncertain",
        read_only=True,
        help_text="True when the model is unsure: its top probability is low, or the "
        "first two are close (the service's uncertainty thresholds).",
    )
    correction = serializers.SerializerMethodField(
        help_text="What you said the picture really shows, or null."
    )
    created_at = serializers.DateTimeField()
    last_uploaded_at = serializers.DateTimeField()
    inference_ms = serializers.FloatField(source="classification.inference_ms")

    class Meta:
        ref_name = "Classification"

    @extend_schema_field(CorrectionOutputSerializer(allow_null=True))
    def get_correction(self, upload: Upload) -> dict[str, Any] | None:
        correction = correction_of(upload)
        return None if correction is None else CorrectionOutputSerializer(correction).data

    @extend_schema_field(PredictionOutputSerializer(many=True))
    def get_predictions(self, upload: Upload) -> list[dict[str, Any]]:
        top_k = self.context.get("top_k", DEFAULT_TOP_K)
        predictions = list(upload.classification.predictions.all())[:top_k]
        return PredictionOutputSerializer(predictions, many=True).data


@extend_schema_field(OpenApiTypes.BINARY)
class _ImageFileField(serializers.FileField):
    """A file part in the schema too (drf-spectacular's default says a URI string)."""


class ClassificationCreateApi(APIView):
    parser_classes = [MultiPartParser, FormParser]
    throttle_classes = list(UPLOAD_THROTTLES)  # they count POSTs only

    class InputSerializer(serializers.Serializer):
        image = _ImageFileField(
            allow_empty_file=True,  # the service explains an empty file better
            help_text="The image: JPEG, PNG, GIF, WebP, BMP or TIFF.",
        )
        top_k = serializers.IntegerField(min_value=1, max_value=MAX_TOP_K, default=DEFAULT_TOP_K)

        class Meta:
            ref_name = "ClassificationCreateInput"

        def validate_image(self, image: Any) -> Any:
            getlist = getattr(self.initial_data, "getlist", None)
            sent = getlist("image") if getlist else [image]
            if len(sent) > 1:
                raise serializers.ValidationError(
                    f"Send one image per request; this one had {len(sent)}.", code="multiple_files"
                )
            return image

    class OutputSerializer(UploadOutputSerializer):
        duplicate = serializers.SerializerMethodField(
            help_text="True when you had uploaded these exact bytes before."
        )

        class Meta:
            ref_name = "ClassificationCreated"

        def get_duplicate(self, upload: Upload) -> bool:
            return bool(self.context.get("duplicate"))

    @extend_schema(
        tags=[TAG],
        summary="Classify an image",
        description=(
            "Upload one image (multipart field `image`). A repeat of bytes you uploaded "
            "before returns your existing classification with 200 and `duplicate: true`."
        ),
        request={"multipart/form-data": InputSerializer},
        responses={
            201: OutputSerializer,
            200: OutputSerializer,
            **_errors(400, 401, 413, 415, 429, 503, 507),
        },
    )
    def post(self, request: Request) -> Response:
        serializer = ClassificationCreateApi.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        outcome = upload_classify(
            user=request.user,
            file=serializer.validated_data["image"],
            top_k=serializer.validated_data["top_k"],
        )
        data = ClassificationCreateApi.OutputSerializer(
            outcome.upload, context={"top_k": outcome.top_k, "duplicate": outcome.duplicate}
        ).data
        code = status.HTTP_200_OK if outcome.duplicate else status.HTTP_201_CREATED
        return Response(data, status=code)


class _TopKSerializer(serializers.Serializer):
    top_k = serializers.IntegerField(min_value=1, max_value=MAX_TOP_K, default=DEFAULT_TOP_K)


TOP_K_PARAMETER = OpenApiParameter(
    "top_k",
    {"type": "integer", "minimum": 1, "maximum": MAX_TOP_K, "default": DEFAULT_TOP_K},
    description=f"How many predictions to return, 1–{MAX_TOP_K} (default {DEFAULT_TOP_K}).",
)


UNCERTAIN_PARAMETER = OpenApiParameter(
    "uncertain",
    OpenApiTypes.BOOL,
    description="true: only classifications the model is unsure of; false: only the others.",
)


class ClassificationPagination(PageNumberPagination):
    page_size_query_param = "page_size"  # default: REST_FRAMEWORK["PAGE_SIZE"]
    max_page_size = 100


class ClassificationListApi(APIView):
    pagination_class = ClassificationPagination

    class FilterSerializer(_TopKSerializer):
        label = serializers.CharField(required=False, allow_blank=True, max_length=200)
        # Spelled exactly true or false, as the export and the history page take it.
        uncertain = serializers.ChoiceField(
            choices=UNCERTAIN_CHOICES,
            required=False,
            allow_blank=True,  # no filter, as the history page's "All" sends it
            error_messages={"invalid_choice": 'Must be true or false, not "{input}".'},
        )

    @extend_schema(
        tags=[TAG],
        summary="Your classifications, most recently uploaded first",
        parameters=[
            OpenApiParameter(
                "label",
                # DRF's CharField refuses a NUL character (400); the schema says so too.
                {"type": "string", "maxLength": 200, "pattern": "^[^\\x00]*$"},
                description="Only uploads with this text in a top-3 label.",
            ),
            UNCERTAIN_PARAMETER,
            TOP_K_PARAMETER,
        ],
        responses={200: UploadOutputSerializer(many=True), **_errors(400, 401, 404, 503)},
    )
    def get(self, request: Request) -> Response:
        filters = ClassificationListApi.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        uploads = upload_list_for_user(
            user=request.user,
            label=filters.validated_data.get("label"),
            uncertain=uncertain_filter(filters.validated_data.get("uncertain")),
        )
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(uploads, request, view=self)
        data = UploadOutputSerializer(
            page, many=True, context={"top_k": filters.validated_data["top_k"]}
        ).data
        return paginator.get_paginated_response(data)


class ClassificationDetailApi(APIView):
    @extend_schema(
        tags=[TAG],
        summary="One of your classifications",
        parameters=[TOP_K_PARAMETER],
        responses={200: UploadOutputSerializer, **_errors(400, 401, 404, 503)},
    )
    def get(self, request: Request, upload_id: int) -> Response:
        params = _TopKSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        upload = upload_get_for_user(user=request.user, upload_id=upload_id)
        return Response(UploadOutputSerializer(upload, context=params.validated_data).data)


class ClassificationDeleteApi(APIView):
    @extend_schema(
        tags=[TAG],
        summary="Delete one of your classifications",
        description="The image is deleted too once nobody refers to it any more.",
        responses={204: None, **_errors(401, 404, 503)},
    )
    def delete(self, request: Request, upload_id: int) -> Response:
        upload_delete(user=request.user, upload_id=upload_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ClassificationCollectionApi(ClassificationListApi, ClassificationCreateApi):
    """GET lists, POST creates: two operations at /classifications/."""


class ClassificationItemApi(ClassificationDetailApi, ClassificationDeleteApi):
    """GET fetches, DELETE deletes: two operations at /classifications/{id}/."""
