"""Staff only: how two model versions differ on the images both classified."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.permissions import IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from ..model_comparison import ComparisonRefused, compare, default_pair
from .errors import ErrorOutputSerializer

TAG = "service"
_KEY = {"type": "string", "maxLength": 100}




class ModelCompareApi(APIView):
    permission_classes = [IsAdminUser]

    class InputSerializer(serializers.Serializer):
        def get_fields(self):
            # "from" is a Python keyword: the fields are named in a dict instead.
            return {
                "from": serializers.CharField(max_length=100, required=False),
                "to": serializers.CharField(max_length=100, required=False),
            }

    class OutputSerializer(serializers.Serializer):
        class ChangeSerializer(serializers.Serializer):
            old_label = serializers.CharField()
            new_label = serializers.CharField()
            count = serializers.IntegerField()

            class Meta:
                ref_name = "LabelChange"

        class FlipsSerializer(serializers.Serializer):
            label = serializers.CharField(help_text="The old version's top label.")
            changed = serializers.IntegerField(help_text="Its images the new version labels otherwise.")
            total = serializers.IntegerField(help_text="Its images classified by both.")

            class Meta:
                ref_name = "LabelFlips"

        count = serializers.IntegerField(help_text="Stored images classified by both versions.")
        agreement = serializers.FloatField(help_text="Share of them with the same top label, 0 to 1.")
        agreeing = serializers.IntegerField()
        changes = ChangeSerializer(many=True, help_text="The 20 most frequent label changes.")
        flips = FlipsSerializer(many=True, help_text="Per old top label, most flipped first.")

        class Meta:
            ref_name = "ModelComparison"

        def get_fields(self):
            keys = {
                "from": serializers.CharField(source="from_key"),
                "to": serializers.CharField(source="to_key"),
            }
            return {**keys, **super().get_fields()}

    @extend_schema(
        tags=[TAG],
        summary="Compare two model versions (staff only)",
        description=(
            "Over the stored images both versions classified: top-1 agreement, the most "
            "frequent label changes, and how often each old label flipped. Without `from` "
            "and `to`: the model active before against the active one."
        ),
        parameters=[
            OpenApiParameter("from", _KEY, description="The old version's key."),
            OpenApiParameter("to", _KEY, description="The new version's key."),
        ],
        responses={
            200: OutputSerializer,
            400: OpenApiResponse(ErrorOutputSerializer, description="A bad or missing key."),
            401: OpenApiResponse(ErrorOutputSerializer),
            403: OpenApiResponse(ErrorOutputSerializer, description="Not staff."),
            404: OpenApiResponse(
                ErrorOutputSerializer,
                description="A version that classified nothing, or no image classified by both.",
            ),
            503: OpenApiResponse(ErrorOutputSerializer),
        },
    )
    def get(self, request: Request) -> Response:
        params = ModelCompareApi.InputSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        default_from, default_to = default_pair()
        from_key = params.validated_data.get("from") or default_from
        to_key = params.validated_data.get("to") or default_to
        if not from_key or not to_key:
            raise ComparisonRefused(
                "Name the two model versions to compare: ?from=KEY&to=KEY (no model was "
                "active before the current one to compare it with)."
            )
        comparison = compare(from_key, to_key)
        return Response(ModelCompareApi.OutputSerializer(comparison).data)
