"""Upload, history, detail and delete: the pages a signed-in user works with."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.files.uploadedfile import UploadedFile
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from .. import storage
from ..configured_classifier import get_classifier
from ..engine.classifier import ModelUnavailable
from ..engine.images import ACCEPTED_CONTENT_TYPES, ACCEPTED_EXTENSIONS
from ..errors import describe_error, log_server_side, too_large_message
from ..corrections import CorrectionRefused, correction_of, correction_remove, correction_set
from ..forms import CorrectionForm, HistorySearchForm, UploadForm
from ..selectors import upload_get_for_user, upload_list_for_user
from ..throttling import throttle_uploads
from ..services import (
    DEFAULT_TOP_K,
    UploadOutcome,
    upload_classify,
    upload_delete,
)

HISTORY_PAGE_SIZE = 24
DETAIL_TOP_K = 5


@dataclass(frozen=True)
class UploadPageResult:
    filename: str
    outcome: UploadOutcome | None = None
    error: str | None = None
    status: int = 200


@login_required
@require_http_methods(["GET", "POST"])
@throttle_uploads
def upload_page(request: HttpRequest) -> HttpResponse:
    results: list[UploadPageResult] = []
    status = 200
    if request.method == "POST":
        form = UploadForm(request.POST, request.FILES)
        if form.is_valid():
            results = [_upload_one(request, file) for file in form.cleaned_data["images"]]
            # All failed: answer with the first reason, as the API would for one file.
            if not any(result.outcome for result in results):
                status = results[0].status
        else:
            status = 400
    else:
        form = UploadForm()
    max_bytes = settings.RECOGNITION_MAX_UPLOAD_BYTES
    context = {
        "form": form,
        "results": results,
        # The browser checks files against the server's own limits before sending them.
        "max_upload_bytes": max_bytes,
        "too_large_message": too_large_message(max_bytes),
        "accepted_types": ",".join(ACCEPTED_CONTENT_TYPES),
        "accepted_extensions": ",".join(ACCEPTED_EXTENSIONS),
    }
    return render(request, "recognition/upload.html", context, status=status)


def _upload_one(request: HttpRequest, file: UploadedFile) -> UploadPageResult:
    name = file.name or "image"
    try:
        outcome = upload_classify(user=request.user, file=file, top_k=DEFAULT_TOP_K)
    except Exception as exc:
        # This file's failure only: the files before it are saved and keep their results.
        answer = describe_error(exc)
        if answer is None:
            raise
        log_server_side(answer, exc, request)
        return UploadPageResult(name, error=answer.message, status=answer.status)
    return UploadPageResult(outcome.upload.original_filename, outcome=outcome)


@login_required
def history_page(request: HttpRequest) -> HttpResponse:
    search = HistorySearchForm(request.GET)
    search.is_valid()  # an invalid filter is shown with its error and otherwise ignored
    filters = search.filters()
    other_filters = any(
        filters[name] is not None
        for name in ("uploaded_from", "uploaded_until", "min_score", "uncertain")
    )
    uploads = upload_list_for_user(user=request.user, **filters)
    page = Paginator(uploads, HISTORY_PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        "search": search,
        "query": filters["label"],
        "other_filters": other_filters,
        "filtered": bool(filters["label"]) or other_filters,
        # Page links carry the filters along.
        "filter_query": _filter_query(search),
        "page": page,
        # Called only when the cached datalist in the template has to be rendered.
        "label_suggestions": category_names,
    }
    return render(request, "recognition/history.html", context)


def _filter_query(search: HistorySearchForm) -> str:
    data = getattr(search, "cleaned_data", {})
    values = {name: data.get(name) for name in search.fields}
    return urlencode(
        {
            name: value.isoformat() if hasattr(value, "isoformat") else value
            for name, value in values.items()
            if value not in (None, "")
        }
    )


def category_names() -> list[str]:
    """The active model's category names: the label suggestions on the history page."""
    try:
        return list(get_classifier().manifest().categories)
    except ModelUnavailable:
        return []


@login_required
def upload_detail_page(
    request: HttpRequest, upload_id: int, correction_form: CorrectionForm | None = None
) -> HttpResponse:
    upload = upload_get_for_user(user=request.user, upload_id=upload_id)
    predictions = list(upload.classification.predictions.all())[:DETAIL_TOP_K]
    context = {
        "upload": upload,
        "predictions": predictions,
        "browser_formats": storage.BROWSER_FORMATS,
        "custom_weights": upload.classification.custom_weights,
        "correction": correction_of(upload),
        "correction_form": correction_form or CorrectionForm(),
        "label_suggestions": category_names,
    }
    status = 400 if correction_form is not None else 200
    return render(request, "recognition/detail.html", context, status=status)


@login_required
@require_http_methods(["POST"])
def upload_correction_page(request: HttpRequest, upload_id: int) -> HttpResponse:
    """The detail page's correction form: save (or replace) it, or withdraw it."""
    if "remove" in request.POST:
        if correction_remove(user=request.user, upload_id=upload_id):
            messages.success(request, "Your correction is withdrawn.")
        return redirect("upload-detail", upload_id=upload_id)
    form = CorrectionForm(request.POST)
    if form.is_valid():
        try:
            correction = correction_set(
                user=request.user,
                upload_id=upload_id,
                label=form.cleaned_data["label"],
                category_only=not form.cleaned_data["none_of_these"],
            )
        except CorrectionRefused as refusal:
            form.add_error("label", refusal.message)
        else:
            messages.success(request, f"Saved: this is “{correction.label}”. It waits for review.")
            return redirect("upload-detail", upload_id=upload_id)
    # Shown again with the owner's text and the reason, as a 400.
    return upload_detail_page(request, upload_id, correction_form=form)


@login_required
@require_http_methods(["GET", "POST"])
def upload_delete_page(request: HttpRequest, upload_id: int) -> HttpResponse:
    """GET asks for confirmation, POST deletes: works without JavaScript."""
    upload = upload_get_for_user(user=request.user, upload_id=upload_id, with_results=False)
    if request.method == "POST":
        upload_delete(user=request.user, upload_id=upload.pk)
        messages.success(request, f"Deleted {upload.original_filename}.")
        return redirect("history")
    return render(request, "recognition/confirm_delete.html", {"upload": upload})
