"""Review, not editing: admins see every image, classification and upload with
thumbnails, filters and search; predictions are read-only, deletions go through the
same service as the users' own."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from .models import Classification, Prediction, StoredImage, Upload
from .services import upload_delete
from .views.media import stored_image_thumbnail_response


def _thumbnail_html(stored: StoredImage, size: int = 64) -> str:
    url = reverse("admin:recognition_storedimage_thumbnail", args=[stored.pk])
    return format_html(
        '<img src="{}" alt="Thumbnail of image {}" width="{}" height="{}" '
        'style="object-fit:cover" loading="lazy">',
        url,
        stored.sha256[:12],
        size,
        size,
    )


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records are written by the upload service only."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class PredictionInline(admin.TabularInline):
    model = Prediction
    fields = ("rank", "label", "index", "score")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(StoredImage)
class StoredImageAdmin(ReadOnlyAdmin):
    list_display = (
        "thumbnail", "sha256", "format", "size", "byte_size", "upload_count", "created_at"
    )
    list_filter = ("format", "created_at")
    search_fields = ("sha256",)
    date_hierarchy = "created_at"
    fields = ("preview", "sha256", "path", "format", "width", "height", "byte_size", "created_at")
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[StoredImage]:
        return super().get_queryset(request).annotate(num_uploads=Count("uploads"))

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # images go when their last upload is deleted

    def get_urls(self) -> list[URLPattern]:
        thumbnail = self.admin_site.admin_view(self.thumbnail_view)
        return [
            path("<int:pk>/thumbnail/", thumbnail, name="recognition_storedimage_thumbnail"),
            *super().get_urls(),
        ]

    def thumbnail_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        if not self.has_view_permission(request):
            return HttpResponse(status=403)
        return stored_image_thumbnail_response(get_object_or_404(StoredImage, pk=pk))

    @admin.display(description="Thumbnail")
    def thumbnail(self, stored: StoredImage) -> str:
        return _thumbnail_html(stored)

    @admin.display(description="Preview")
    def preview(self, stored: StoredImage) -> str:
        return _thumbnail_html(stored, size=256)

    @admin.display(description="Pixels")
    def size(self, stored: StoredImage) -> str:
        return f"{stored.width} × {stored.height}"

    @admin.display(description="Uploads", ordering="num_uploads")
    def upload_count(self, stored: StoredImage) -> int:
        return stored.num_uploads


@admin.register(Classification)
class ClassificationAdmin(ReadOnlyAdmin):
    list_display = (
        "thumbnail",
        "top_label",
        "confidence",
        "model_name",
        "model_version",
        "inference_ms",
        "created_at",
    )
    list_filter = ("top_label", "model_name", "model_version", "created_at")
    search_fields = ("top_label", "predictions__label", "stored_image__sha256")
    list_select_related = ("stored_image",)
    date_hierarchy = "created_at"
    fields = (
        "thumbnail",
        "stored_image",
        "model_name",
        "model_version",
        "top_label",
        "top_score",
        "inference_ms",
        "created_at",
    )
    readonly_fields = fields
    inlines = [PredictionInline]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # uploads point at them

    @admin.display(description="Thumbnail")
    def thumbnail(self, classification: Classification) -> str:
        return _thumbnail_html(classification.stored_image)

    @admin.display(description="Confidence", ordering="top_score")
    def confidence(self, classification: Classification) -> str:
        return f"{classification.top_score:.1%}"


@admin.register(Upload)
class UploadAdmin(ReadOnlyAdmin):
    list_display = (
        "thumbnail",
        "original_filename",
        "user",
        "top_label",
        "confidence",
        "model_version",
        "last_uploaded_at",
    )
    list_filter = (
        "classification__top_label",
        "classification__model_version",
        "last_uploaded_at",
        ("user", admin.RelatedOnlyFieldListFilter),
    )
    search_fields = (
        "original_filename",
        "stored_image__sha256",
        "classification__predictions__label",
        "user__username",
    )
    list_select_related = ("user", "stored_image", "classification")
    date_hierarchy = "last_uploaded_at"
    fields = (
        "thumbnail",
        "user",
        "original_filename",
        "stored_image",
        "classification",
        "created_at",
        "last_uploaded_at",
    )
    readonly_fields = fields

    @admin.display(description="Thumbnail")
    def thumbnail(self, upload: Upload) -> str:
        return _thumbnail_html(upload.stored_image)

    @admin.display(description="Top label", ordering="classification__top_label")
    def top_label(self, upload: Upload) -> str:
        return upload.classification.top_label

    @admin.display(description="Confidence", ordering="classification__top_score")
    def confidence(self, upload: Upload) -> str:
        return f"{upload.classification.top_score:.1%}"

    @admin.display(description="Model version", ordering="classification__model_version")
    def model_version(self, upload: Upload) -> str:
        return upload.classification.model_version

    def delete_model(self, request: HttpRequest, obj: Upload) -> None:
        upload_delete(user=obj.user, upload_id=obj.pk)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Upload]) -> None:
        for upload in queryset.select_related("user"):
            upload_delete(user=upload.user, upload_id=upload.pk)
