"""The review queue's pages, for reviewers only (recognition/review.py says who and what)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST, require_safe

from .. import storage
from ..corrections import CorrectionRefused
from ..models import ReviewDecision
from ..review import ReviewRefused, queue, queue_size, require_reviewer, review_decide, reviewable_upload
from .media import file_response, stored_image_thumbnail_response
from .pages import category_names

TOP_PREDICTIONS = 3
DECIDED = {
    ReviewDecision.ACCEPTED: "Accepted",
    ReviewDecision.REJECTED: "Rejected",
    ReviewDecision.EDITED: "Relabelled",
}


@login_required
@require_safe
def review_page(request: HttpRequest) -> HttpResponse:
    items = queue(user=request.user)
    context = {
        "items": [
            (item, list(item.classification.predictions.all())[:TOP_PREDICTIONS])
            for item in items
        ],
        "waiting": queue_size(user=request.user),
        # Where the reviewer was: after a decision the next item takes its place.
        "at": _position(request.GET.get("at"), len(items)),
        "label_suggestions": category_names,
    }
    return render(request, "recognition/review.html", context)


@login_required
@require_POST
def review_decide_page(request: HttpRequest, upload_id: int) -> HttpResponse:
    require_reviewer(request.user)
    decision = request.POST.get("decision", "")
    try:
        review = review_decide(
            reviewer=request.user,
            upload_id=upload_id,
            decision=decision,
            label=request.POST.get("label", ""),
        )
    except (ReviewRefused, CorrectionRefused) as refusal:
        messages.error(request, refusal.message)
    else:
        settled = f" as “{review.label}”" if review.label else ""
        messages.success(
            request, f"{DECIDED[review.decision]} “{review.proposed_label}”{settled}."
        )
    at = _position(request.POST.get("at"), None)
    return redirect(f"{reverse('review')}?at={at}")


@login_required
@require_safe
def review_image(request: HttpRequest, upload_id: int) -> HttpResponse:
    """The picture of a queue item: the original when a browser shows its format, else
    its thumbnail."""
    upload = reviewable_upload(user=request.user, upload_id=upload_id)
    stored = upload.stored_image
    if stored.format in storage.BROWSER_FORMATS:
        return file_response(stored.path, storage.content_type(stored.format), None)
    return stored_image_thumbnail_response(stored)


def _position(value: str | None, length: int | None) -> int:
    try:
        position = max(int(value or 0), 0)
    except ValueError:
        return 0
    if length is not None:
        position = min(position, max(length - 1, 0))
    return position
