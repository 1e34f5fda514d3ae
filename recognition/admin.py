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
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.text import Truncator
from django.utils.timezone import localtime

from . import active_model, export, finetune, model_comparison, reclassify
from .engine import model_store
from .errors import ServiceError
from .models import (
    ActiveModel,
    Classification,
    Correction,
    Job,
    JobItem,
    JobKind,
    Prediction,
    Review,
    StoredImage,
    Upload,
)
from .services import upload_delete
from .storage import StorageError
from .templatetags.recognition import milliseconds, percent
from .uncertainty import uncertain_q
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


class UncertainListFilter(admin.SimpleListFilter):
    """Uncertain or confident, by the thresholds in force now (recognition/uncertainty.py)."""

    title = "uncertain"
    parameter_name = "uncertain"
    # Where the classification is from the list's model: "" on Classification itself.
    prefix = ""

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("true", "Uncertain"), ("false", "Confident")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        rule = uncertain_q(self.prefix)
        if self.value() == "true":
            return queryset.filter(rule)
        if self.value() == "false":
            return queryset.exclude(rule)
        return queryset


class UploadUncertainListFilter(UncertainListFilter):
    prefix = "classification__"


@admin.register(Classification)
class ClassificationAdmin(ReadOnlyAdmin):
    list_display = (
        "thumbnail", "top_label", "confidence", "model_and_version", "inference", "created"
    )
    list_filter = (UncertainListFilter, "top_label", "model_name", "model_version", "created_at")
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
        UploadUncertainListFilter,
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


@admin.register(Correction)
class CorrectionAdmin(ReadOnlyAdmin):
    """What owners said their pictures show, and what review made of it."""

    list_display = ("thumbnail", "label", "predicted", "user", "status", "created")
    list_filter = ("status", ("user", admin.RelatedOnlyFieldListFilter))
    search_fields = ("label", "classification__top_label", "user__username")
    list_select_related = ("user", "classification", "upload__stored_image")
    fields = (
        "thumbnail", "upload", "user", "label", "index", "model_key", "classification",
        "status", "created_at", "reviewed_by", "reviewed_at",
    )
    readonly_fields = fields

    @admin.display(description="Image")
    def thumbnail(self, correction: Correction) -> str:
        return _thumbnail_html(correction.upload.stored_image)

    @admin.display(description="Model said", ordering="classification__top_label")
    def predicted(self, correction: Correction) -> str:
        return correction.classification.top_label

    @admin.display(description="Said", ordering="created_at")
    def created(self, correction: Correction) -> str:
        return _when_html(correction.created_at)


@admin.register(Review)
class ReviewAdmin(ReadOnlyAdmin):
    """Every decision of the review queue, kept for good: not editable, not deletable."""

    list_display = ("proposed_label", "decision", "label", "reviewer", "decided")
    list_filter = ("decision", ("reviewer", admin.RelatedOnlyFieldListFilter))
    search_fields = ("proposed_label", "label", "reviewer__username")
    list_select_related = ("reviewer",)
    fields = (
        "upload", "classification", "correction", "proposed_label", "decision", "label",
        "reviewer", "created_at",
    )
    readonly_fields = fields

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="Decided", ordering="created_at")
    def decided(self, review: Review) -> str:
        return _when_html(review.created_at)


@admin.register(ActiveModel)
class ActiveModelAdmin(admin.ModelAdmin):
    """The activation history, read-only; "Add" activates a prepared model, and the
    action activates a former one again (a rollback), both recorded with who did it."""

    list_display = ("key", "current", "previous_key", "activated_by", "activated")
    list_select_related = ("activated_by",)
    readonly_fields = ("key", "previous_key", "activated_by", "activated_at")
    form = ActivateModelForm
    actions = ["activate_again", "reclassify_with_active_model", "finetune_from_corrections"]

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

    # Here rather than on the stored images: a reclassification covers every image, not
    # a selection, and this is the page an admin is on right after switching models.
    @admin.action(description="Reclassify with the active model", permissions=["add"])
    def reclassify_with_active_model(self, request: HttpRequest, queryset: QuerySet[ActiveModel]) -> None:
        current = active_model.current()
        if current is None or list(queryset.values_list("pk", flat=True)) != [current.pk]:
            self.message_user(
                request,
                "Select the active model (the ticked row): this action reclassifies with it. "
                "To reclassify with another prepared model, run `python manage.py reclassify "
                "--model KEY`.",
                messages.WARNING,
            )
            return
        try:
            # Only the images it lacks: a fresh classification by the same version would
            # give the same labels.
            job = reclassify.reclassify_start(key=current.key, only_missing=True, owner=request.user)
        except reclassify.ReclassifyRefused as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return
        self._job_queued(
            request, job,
            'Reclassification <a href="{}">#{}</a> with {}: {} of {} images to go. '
            "Its progress is in the job list.",
            job.model_key, job.total - job.processed, job.total,
        )

    @admin.action(description="Fine-tune from accepted corrections", permissions=["add"])
    def finetune_from_corrections(self, request: HttpRequest, queryset: QuerySet[ActiveModel]) -> None:
        """A new version of the selected model, trained by a worker; activating it is
        left to the admin, after reading the accuracies the job reports."""
        keys = set(queryset.values_list("key", flat=True))
        if len(keys) != 1:
            self.message_user(request, "Select one model to fine-tune.", messages.WARNING)
            return
        try:
            job = finetune.finetune_start(base_key=keys.pop(), owner=request.user)
        except finetune.FinetuneRefused as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return
        self._job_queued(
            request, job,
            'Fine-tuning <a href="{}">#{}</a> of {} from {} pictures is queued. The new '
            "version and its accuracies are in the job's options when it is done; "
            "activate it here with “Add”.",
            job.options["base"], job.total,
        )

    def _job_queued(self, request: HttpRequest, job: Job, text: str, *details: Any) -> None:
        """`text` starts with a link to the job: its URL and number fill the first two {}."""
        url = reverse("admin:recognition_job_change", args=[job.pk])
        self.message_user(request, format_html(text, url, job.pk, *details), messages.SUCCESS)


class JobItemInline(admin.TabularInline):
    """An import's files and what became of each: the first ones only, since an import
    may hold ten thousand (the API lists them all, paginated)."""

    model = JobItem
    fields = ("position", "filename", "status", "upload", "error_code", "error_message", "finished_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    max_shown = 100
    verbose_name_plural = f"Files (the first {max_shown})"

    def get_queryset(self, request: HttpRequest) -> QuerySet[JobItem]:
        # Positions count from 0 in each job; the formset filters by job afterwards, so
        # the limit cannot be a slice.
        return super().get_queryset(request).filter(position__lt=self.max_shown)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Job)
class JobAdmin(ReadOnlyAdmin):
    """Every user's background jobs with their progress, read-only: imports are started
    by their owners, reclassifications and fine-tuning from the active-model admin or
    the commands."""

    list_display = (
        "__str__", "kind", "owner", "status", "progress", "failed", "model_key",
        "created", "started", "finished_when",
    )
    list_filter = ("kind", "status")
    search_fields = ("owner__username",)
    list_select_related = ("owner",)
    date_hierarchy = "created_at"
    fields = (
        "kind", "owner", "status", "progress", "done", "failed", "total", "model_key",
        "error", "cancel_requested", "created_at", "started_at", "finished_at", "cursor",
        "options",
    )
    readonly_fields = fields

    def get_inlines(self, request: HttpRequest, obj: Job | None):
        return [JobItemInline] if obj is not None and obj.kind == JobKind.IMPORT else []

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # the record of what was done

    def get_urls(self) -> list[URLPattern]:
        report = self.admin_site.admin_view(self.comparison_view)
        return [
            path("compare/", report, name="recognition_model_comparison"),
            *super().get_urls(),
        ]

    def comparison_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            return HttpResponse(status=403)
        comparison, error = None, None
        if request.GET:
            form = ModelComparisonForm(request.GET)
            pair = (
                (form.cleaned_data["from_key"], form.cleaned_data["to_key"])
                if form.is_valid()
                else None
            )
        else:
            pair = model_comparison.default_pair()
            form = ModelComparisonForm(initial={"from_key": pair[0], "to_key": pair[1]})
            if not all(pair):
                pair, error = None, (
                    "No model was active before the current one (or none is active yet): "
                    "pick the two versions to compare."
                )
        if pair is not None:
            try:
                comparison = model_comparison.compare(*pair)
            except ServiceError as exc:
                error = exc.message
        context = {
            **self.admin_site.each_context(request),
            "title": "Compare two model versions",
            "opts": self.model._meta,
            "form": form,
            "comparison": comparison,
            "error": error,
        }
        return TemplateResponse(request, "admin/recognition/model_comparison.html", context)

    @admin.display(description="Progress")
    def progress(self, job: Job) -> str:
        return f"{job.processed} / {job.total}"

    @admin.display(description="Created", ordering="created_at")
    def created(self, job: Job) -> str:
        return _when_html(job.created_at)

    @admin.display(description="Started", ordering="started_at")
    def started(self, job: Job) -> str:
        return _when_html(job.started_at) if job.started_at else "—"

    @admin.display(description="Finished", ordering="finished_at")
    def finished_when(self, job: Job) -> str:
        return _when_html(job.finished_at) if job.finished_at else "—"


class ModelComparisonForm(forms.Form):
    """Two of the model versions that classified images. Validates only:
    model_comparison.compare() does the rest."""

    from_key = forms.ChoiceField(label="Old version")
    to_key = forms.ChoiceField(label="New version")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        choices = [(key, key) for key in model_comparison.model_versions()]
        for name in ("from_key", "to_key"):
            self.fields[name].choices = choices

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if cleaned.get("from_key") and cleaned.get("from_key") == cleaned.get("to_key"):
            raise forms.ValidationError("Pick two different versions.")
        return cleaned
