"""Bulk imports: start one, follow its progress, cancel it, list them."""

from __future__ import annotations

from typing import Any

from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from ..imports import TooManyArchives, import_rate, import_start
from ..jobs import job_cancel
from ..models import Job, JobItem, JobKind
from ..selectors import job_get_for_user, job_items, job_list_for_user
from ..services import DEFAULT_TOP_K, MAX_TOP_K
from .errors import ErrorOutputSerializer

TAG = "imports"


def _errors(*codes: int) -> dict[int, OpenApiResponse]:
    return {code: OpenApiResponse(ErrorOutputSerializer) for code in codes}


@extend_schema_field(OpenApiTypes.BINARY)
class _BinaryFileField(serializers.FileField):
    """A file part in the schema too."""


class ImportOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.CharField()
    total = serializers.IntegerField()
    done = serializers.IntegerField(help_text="Pictures classified and in your history.")
    failed = serializers.IntegerField(help_text="Files refused (each item says why).")
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    model = serializers.CharField(source="model_key", help_text="The model version it used.")
    error = serializers.CharField(help_text="Why the import failed, if it did.")
    rate = serializers.SerializerMethodField(help_text="Pictures per second so far.")
    seconds_left = serializers.SerializerMethodField(help_text="At that rate.")
    url = serializers.SerializerMethodField()

    class Meta:
        ref_name = "Import"

    def get_rate(self, job: Job) -> float | None:
        return import_rate(job)[0]

    def get_seconds_left(self, job: Job) -> float | None:
        return import_rate(job)[1]

    def get_url(self, job: Job) -> str:
        path = reverse("api:import", args=[job.pk])
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request else path


class ImportItemOutputSerializer(serializers.Serializer):
    class ItemErrorSerializer(serializers.Serializer):
        code = serializers.CharField(source="error_code")
        message = serializers.CharField(source="error_message")

        class Meta:
            ref_name = "ImportItemError"

    position = serializers.IntegerField()
    filename = serializers.CharField()
    status = serializers.CharField()
    classification_id = serializers.IntegerField(source="upload_id", allow_null=True)
    label = serializers.SerializerMethodField()
    score = serializers.SerializerMethodField()
    error = serializers.SerializerMethodField()

    class Meta:
        ref_name = "ImportItem"

    def get_label(self, item: JobItem) -> str | None:
        return item.upload.classification.top_label if item.upload_id else None

    def get_score(self, item: JobItem) -> float | None:
        return item.upload.classification.top_score if item.upload_id else None

    @extend_schema_field(ItemErrorSerializer(allow_null=True))
    def get_error(self, item: JobItem) -> dict[str, Any] | None:
        return ImportItemOutputSerializer.ItemErrorSerializer(item).data if item.error_code else None


class ImportPagination(PageNumberPagination):
    page_size_query_param = "page_size"
    max_page_size = 500


class ImportCollectionApi(APIView):
    parser_classes = [MultiPartParser, FormParser]
    pagination_class = ImportPagination

    class InputSerializer(serializers.Serializer):
        files = serializers.ListField(
            child=_BinaryFileField(allow_empty_file=True), required=False, default=list,
            help_text="The pictures, one `files` part each (or send `archive` instead).",
        )
        archive = _BinaryFileField(
            allow_empty_file=True, required=False, default=None,
            help_text=(
                "Instead of `files`: one ZIP archive of the pictures (folders are fine; "
                "each file in it becomes one item of the import)."
            ),
        )
        top_k = serializers.IntegerField(min_value=1, max_value=MAX_TOP_K, default=DEFAULT_TOP_K)

        class Meta:
            ref_name = "ImportCreateInput"

    @extend_schema(
        tags=[TAG],
        summary="Import many pictures in the background",
        description=(
            "Either `files` parts (one picture each) or one `archive` part (a ZIP of "
            "pictures), not both. An archive refused whole (not a readable ZIP, a zip bomb, "
            "too many entries or bytes) is answered 400 or 413 and nothing is recorded; its "
            "files refused one by one (unsafe names, symbolic links, nested archives, "
            "encrypted, not a picture) are failed items of the import."
        ),
        request={"multipart/form-data": InputSerializer},
        responses={202: ImportOutputSerializer, **_errors(400, 401, 413, 429, 503, 507)},
    )
    def post(self, request: Request) -> Response:
        # The serializer would take the first `archive` part and drop the rest unseen.
        # (An empty body parses to a plain dict, with no `getlist`.)
        getlist = getattr(request.data, "getlist", None)
        if getlist is not None and len(getlist("archive")) > 1:
            raise TooManyArchives()
        serializer = ImportCollectionApi.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        job = import_start(
            user=request.user,
            files=serializer.validated_data["files"],
            archive=serializer.validated_data["archive"],
            top_k=serializer.validated_data["top_k"],
        )
        data = ImportOutputSerializer(job, context={"request": request}).data
        return Response(data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        tags=[TAG],
        summary="Your imports, newest first",
        responses={200: ImportOutputSerializer(many=True), **_errors(401, 404, 503)},
    )
    def get(self, request: Request) -> Response:
        imports = job_list_for_user(user=request.user, kind=JobKind.IMPORT)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(imports, request, view=self)
        data = ImportOutputSerializer(page, many=True, context={"request": request}).data
        return paginator.get_paginated_response(data)


class ImportDetailApi(APIView):
    pagination_class = ImportPagination

    @extend_schema(
        tags=[TAG],
        summary="One of your imports, with its files' outcomes (paginated)",
        responses={200: ImportOutputSerializer, **_errors(401, 404, 503)},
    )
    def get(self, request: Request, job_id: int) -> Response:
        job = job_get_for_user(user=request.user, job_id=job_id, kind=JobKind.IMPORT)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(job_items(job), request, view=self)
        data = dict(ImportOutputSerializer(job, context={"request": request}).data)
        data["items"] = ImportItemOutputSerializer(page, many=True).data
        data["items_next"] = paginator.get_next_link()
        data["items_previous"] = paginator.get_previous_link()
        return Response(data)


class ImportCancelApi(APIView):
    @extend_schema(
        tags=[TAG],
        summary="Cancel one of your imports",
        description="A queued import ends at once; a running one stops before its next batch.",
        request=None,
        responses={200: ImportOutputSerializer, **_errors(401, 404, 503)},
    )
    def post(self, request: Request, job_id: int) -> Response:
        job_get_for_user(user=request.user, job_id=job_id, kind=JobKind.IMPORT)
        job = job_cancel(user=request.user, job_id=job_id)
        return Response(ImportOutputSerializer(job, context={"request": request}).data)
