"""Reads: every query for a user's uploads goes through here, so ownership is checked
in one place. Another user's upload does not exist, as far as anyone else can tell."""

from __future__ import annotations

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.db.models import Exists, OuterRef, Prefetch, QuerySet
from django.http import Http404

from .models import Prediction, Upload

# Label search looks at the predictions a user was shown, not the long tail.
SEARCH_RANKS = 3


def upload_list_for_user(
    *, user: AbstractBaseUser | AnonymousUser, label: str | None = None
) -> QuerySet[Upload]:
    """The user's uploads, most recently uploaded first; `label` matches any of the top
    predictions, case-insensitively and in part ("retriever" finds "golden retriever")."""
    if not user.is_authenticated:
        return Upload.objects.none()
    uploads = _uploads_with_results().filter(user=user)
    label = (label or "").strip()
    if label:
        matching = Prediction.objects.filter(
            classification=OuterRef("classification"),
            rank__lte=SEARCH_RANKS,
            label__icontains=label,
        )
        uploads = uploads.filter(Exists(matching))
    return uploads.order_by("-last_uploaded_at", "-id")


def upload_get_for_user(*, user: AbstractBaseUser | AnonymousUser, upload_id: int) -> Upload:
    """The user's upload with this id; Http404 whether it is missing or someone else's."""
    if not user.is_authenticated:
        raise Http404("No such upload.")
    try:
        return _uploads_with_results().get(user=user, pk=upload_id)
    except (Upload.DoesNotExist, ValueError, TypeError):
        raise Http404("No such upload.") from None


def _uploads_with_results() -> QuerySet[Upload]:
    return Upload.objects.select_related("stored_image", "classification").prefetch_related(
        Prefetch("classification__predictions", queryset=Prediction.objects.order_by("rank"))
    )
