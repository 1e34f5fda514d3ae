"""Review, not editing: admins see every image, classification and upload with
thumbnails, filters and search; predictions are read-only, deletions go through the
same service as the users' own."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.defaultfilters import filesizeformat
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.text import Truncator
from django.utils.timezone import localtime

from . import active_model, export
from .engine import model_store
from .models import ActiveModel, Classification, Prediction, StoredImage, Upload
from .services import upload_delete
from .storage import StorageError
from .templatetags.recognition import milliseconds, percent
from .views.media import stored_image_thumbnail_response

# Lists stay within a 1280 px screen beside the filter column: long names wrap, hashes
# are shortened (the full one is in the tooltip and on the change page).
ADMIN_CSS = {"all": ["recognition/admin.css"]}


def _thumbnail_html(stored: StoredImage, size: int = 48) -> str:
    url = reverse("admin:recognition_storedimage_thumbnail", args=[stored.pk])
    return format_html(
        '<img class="admin-thumbnail" src="{}" alt="Thumbnail of image {}" width="{}" '
        'height="{}" loading="lazy">',
        url,
        stored.sha256[:12],
        size,
        size,
    )


def _short_hash_html(sha256: str) -> str:
    """The first 12 hex digits, as the site's detail page shows them."""
    return format_html('<code class="hash" title="{}">{}…</code>', sha256, sha256[:12])


def _filename_html(name: str) -> str:
    """At most 40 characters of a file name; all of it in the tooltip."""
    return format_html('<span title="{}">{}</span>', name, Truncator(name).chars(40))


def _when_html(moment: datetime) -> str:
    """"2026-12-02 06:31", in the site's time zone: half the width of Django's default."""
    local = localtime(moment)
    return format_html(
        '<time datetime="{}">{}</time>', local.isoformat(), local.strftime("%Y-%m-%d %H:%M")
    )


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records are written by the upload service only."""

    class Media:
        css = ADMIN_CSS

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
        "thumbnail", "short_hash", "format", "size", "file_size", "upload_count", "created"
    )
    list_display_links = ("thumbnail", "short_hash")
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

    @admin.display(description="Image")
    def thumbnail(self, stored: StoredImage) -> str:
        return _thumbnail_html(stored)

    @admin.display(description="Preview")
    def preview(self, stored: StoredImage) -> str:
        return _thumbnail_html(stored, size=256)

    @admin.display(description="SHA-256", ordering="sha256")
    def short_hash(self, stored: StoredImage) -> str:
        return _short_hash_html(stored.sha256)

    @admin.display(description="Pixels")
    def size(self, stored: StoredImage) -> str:
        return f"{stored.width} × {stored.height}"

    @admin.display(description="File size", ordering="byte_size")
    def file_size(self, stored: StoredImage) -> str:
        return filesizeformat(stored.byte_size)

    @admin.display(description="Uploads", ordering="num_uploads")
    def upload_count(self, stored: StoredImage) -> int:
        return stored.num_uploads

    @admin.display(description="Stored", ordering="created_at")
    def created(self, stored: StoredImage) -> str:
        return _when_html(stored.created_at)


@admin.register(Classification)
class ClassificationAdmin(ReadOnlyAdmin):
    list_display = (
        "thumbnail", "top_label", "confidence", "model_and_version", "inference", "created"
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
        "confidence",
        "inference",
        "created_at",
    )
    readonly_fields = fields
    inlines = [PredictionInline]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # uploads point at them

    @admin.display(description="Image")
    def thumbnail(self, classification: Classification) -> str:
        return _thumbnail_html(classification.stored_image)

    @admin.display(description="Confidence", ordering="top_score")
    def confidence(self, classification: Classification) -> str:
        return percent(classification.top_score)

    @admin.display(description="Inference", ordering="inference_ms")
    def inference(self, classification: Classification) -> str:
        return milliseconds(classification.inference_ms)

    @admin.display(description="Model", ordering="model_version")
    def model_and_version(self, classification: Classification) -> str:
        """In one column, as the site's detail page shows them."""
        return f"{classification.model_name} {classification.model_version}"

    @admin.display(description="Classified", ordering="created_at")
    def created(self, classification: Classification) -> str:
        return _when_html(classification.created_at)


@admin.register(Upload)
class UploadAdmin(ReadOnlyAdmin):
    # The model is a filter here and a column of the classification list: as a column
    # here too it would push the table under the filters at 1280 px.
    list_display = ("thumbnail", "filename", "user", "top_label", "confidence", "last_uploaded")
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
    # "Select all" exports every user's uploads, each row with its owner's name.
    actions = ["export_csv", "export_jsonl"]

    @admin.display(description="Image")
    def thumbnail(self, upload: Upload) -> str:
        return _thumbnail_html(upload.stored_image)

    @admin.display(description="Top label", ordering="classification__top_label")
    def top_label(self, upload: Upload) -> str:
        return upload.classification.top_label

    @admin.display(description="Confidence", ordering="classification__top_score")
    def confidence(self, upload: Upload) -> str:
        return percent(upload.classification.top_score)

    @admin.display(description="File name", ordering="original_filename")
    def filename(self, upload: Upload) -> str:
        return _filename_html(upload.original_filename)

    @admin.display(description="Last uploaded", ordering="last_uploaded_at")
    def last_uploaded(self, upload: Upload) -> str:
        return _when_html(upload.last_uploaded_at)

    @admin.action(description="Export selected uploads as CSV")
    def export_csv(self, request: HttpRequest, queryset: QuerySet[Upload]) -> HttpResponse:
        uploads = export.staff_uploads(queryset)
        return export.export_response(uploads, format="csv", with_username=True, name="uploads")

    @admin.action(description="Export selected uploads as JSON Lines")
    def export_jsonl(self, request: HttpRequest, queryset: QuerySet[Upload]) -> HttpResponse:
        uploads = export.staff_uploads(queryset)
        return export.export_response(uploads, format="jsonl", with_username=True, name="uploads")

    def delete_model(self, request: HttpRequest, obj: Upload) -> None:
        upload_delete(user=obj.user, upload_id=obj.pk)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Upload]) -> None:
        for upload in queryset.select_related("user"):
            upload_delete(user=upload.user, upload_id=upload.pk)


class ActivateModelForm(forms.ModelForm):
    """Validates only: the activation is written by active_model.activate()."""

    key = forms.ChoiceField(
        label="Model",
        help_text="Every web node switches to it by itself within "
        "RECOGNITION_MODEL_CHECK_SECONDS, every worker at its next sweep.",
    )

    class Meta:
        model = ActiveModel
        fields = ("key",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "key" in self.fields:  # the add form; the history's pages show it read-only
            try:
                keys = active_model.prepared_keys()
            except StorageError:  # the store is away: this node's builds, still activatable
                keys = model_store.prepared_keys(Path(settings.RECOGNITION_MODELS_DIR))
            self.fields["key"].choices = [(key, key) for key in keys]

    def clean_key(self) -> str:
        key = self.cleaned_data["key"]
        try:
            active_model.check_activatable(key)
        except active_model.ActivationRefused as exc:
            raise forms.ValidationError(str(exc)) from None
        return key


@admin.register(ActiveModel)
class ActiveModelAdmin(admin.ModelAdmin):
    """The activation history, read-only; "Add" activates a prepared model, and the
    action activates a former one again (a rollback), both recorded with who did it."""

    list_display = ("key", "current", "previous_key", "activated_by", "activated")
    list_select_related = ("activated_by",)
    readonly_fields = ("key", "previous_key", "activated_by", "activated_at")
    form = ActivateModelForm
    actions = ["activate_again"]

    class Media:
        css = ADMIN_CSS

    def get_fields(self, request: HttpRequest, obj: Any = None):
        return ("key",) if obj is None else self.readonly_fields

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None):
        return () if obj is None else self.readonly_fields

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # the history is what a rollback goes back to

    def save_model(self, request: HttpRequest, obj: ActiveModel, form: Any, change: bool) -> None:
        row = active_model.activate(form.cleaned_data["key"], user=request.user)
        obj.pk, obj.previous_key, obj.activated_at = row.pk, row.previous_key, row.activated_at

    @admin.display(description="Active", boolean=True)
    def current(self, row: ActiveModel) -> bool:
        return row.pk == getattr(active_model.current(), "pk", None)

    @admin.display(description="Activated", ordering="activated_at")
    def activated(self, row: ActiveModel) -> str:
        return _when_html(row.activated_at)

    @admin.action(description="Activate the selected model again", permissions=["add"])
    def activate_again(self, request: HttpRequest, queryset: QuerySet[ActiveModel]) -> None:
        keys = set(queryset.values_list("key", flat=True))
        if len(keys) != 1:
            self.message_user(request, "Select one model to activate.", messages.WARNING)
            return
        try:
            row = active_model.activate(keys.pop(), user=request.user)
        except active_model.ActivationRefused as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        self.message_user(request, f"{row.key} is now the active model.", messages.SUCCESS)
