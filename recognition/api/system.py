"""The service's own state: which model answers, and whether it can answer at all."""

from __future__ import annotations

from django.db import DatabaseError, connection
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from ..configured_classifier import get_classifier
from .errors import ErrorOutputSerializer

TAG = "service"


class ModelActiveApi(APIView):
    class OutputSerializer(serializers.Serializer):
        name = serializers.CharField()
        version = serializers.CharField()
        custom = serializers.BooleanField(
            help_text="Fine-tuned weights rather than the official ones."
        )
        num_categories = serializers.IntegerField()

        class Meta:
            ref_name = "ActiveModel"

    @extend_schema(
        tags=[TAG],
        summary="The model that classifies new uploads",
        responses={
            200: OutputSerializer,
            401: OpenApiResponse(ErrorOutputSerializer),
            503: OpenApiResponse(ErrorOutputSerializer, description="No usable model is prepared."),
        },
    )
    def get(self, request: Request) -> Response:
        identity = get_classifier().identity()  # ModelUnavailable -> 503
        return Response(ModelActiveApi.OutputSerializer(identity).data)


class HealthApi(APIView):
    """Public, so load balancers and container runtimes can probe it without a token;
    it tells only whether the service works, nothing about its data."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    class OutputSerializer(serializers.Serializer):
        status = serializers.ChoiceField(
            choices=["ok", "overloaded", "unavailable"],
            help_text="overloaded: it has lately answered uploads 503 overloaded (its queue "
            "for the model was full); send traffic elsewhere for a while.",
        )
        model_loaded = serializers.BooleanField()
        database = serializers.BooleanField()

        class Meta:
            ref_name = "Health"

    @extend_schema(
        tags=[TAG],
        summary="Whether the service can classify images",
        auth=[],
        responses={200: OutputSerializer, 503: OutputSerializer},
    )
    def get(self, request: Request) -> Response:
        classifier = get_classifier()
        model_loaded = classifier.is_ready()
        database = _database_works()
        overloaded = classifier.shedding()
        healthy = model_loaded and database and not overloaded
        if not (model_loaded and database):
            state = "unavailable"
        else:
            state = "overloaded" if overloaded else "ok"
        data = {
            "status": state,
            "model_loaded": model_loaded,
            "database": database,
        }
        return Response(
            HealthApi.OutputSerializer(data).data,
            status=status.HTTP_200_OK if healthy else status.HTTP_503_SERVICE_UNAVAILABLE,
        )


def _database_works() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            return cursor.fetchone() == (1,)
    except DatabaseError:
        return False
