from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from .classifications import ClassificationCollectionApi, ClassificationItemApi
from .corrections import ClassificationCorrectionApi
from .exports import ClassificationExportApi
from .imports import ImportCancelApi, ImportCollectionApi, ImportDetailApi
from .models_compare import ModelCompareApi
from .system import HealthApi, ModelActiveApi

app_name = "api"

urlpatterns = [
    path("classifications/", ClassificationCollectionApi.as_view(), name="classifications"),
    path("classifications/export/", ClassificationExportApi.as_view(), name="classifications-export"),
    path(
        "classifications/<int:upload_id>/",
        ClassificationItemApi.as_view(),
        name="classification",
    ),
    path(
        "classifications/<int:upload_id>/correction/",
        ClassificationCorrectionApi.as_view(),
        name="classification-correction",
    ),
    path("imports/", ImportCollectionApi.as_view(), name="imports"),
    path("imports/<int:job_id>/", ImportDetailApi.as_view(), name="import"),
    path("imports/<int:job_id>/cancel/", ImportCancelApi.as_view(), name="import-cancel"),
    path("models/active/", ModelActiveApi.as_view(), name="model-active"),
    path("models/compare/", ModelCompareApi.as_view(), name="models-compare"),
    path("health/", HealthApi.as_view(), name="health"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="api:schema"), name="docs"),
]
