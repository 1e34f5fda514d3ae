"""Reads: every query for a user's uploads goes through here, so ownership is checked
in one place. Another user's upload does not exist, as far as anyone else can tell."""

from __future__ import annotations

from datetime import date

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.db.models import Exists, OuterRef, Prefetch, Q, QuerySet
from django.http import Http404

from .models import Job, JobItem, Prediction, Upload
from .uncertainty import uncertain_q

# Label search looks at the predictions a user was shown, not the long tail.
SEARCH_RANKS = 3


def upload_list_for_user(
    *,
    user: AbstractBaseUser | AnonymousUser,
    label: str | None = None,
    uploaded_from: date | None = None,
    uploaded_until: date | None = None,
    min_score: float | None = None,
    uncertain: bool | None = None,
) -> QuerySet[Upload]:
    """The user's uploads, most recently uploaded first; `label` matches any of the top
    predictions or the owner's correction, case-insensitively and in part ("retriever"
    finds "golden retriever").

    The dates bound the day of the last upload, both ends included, in the current time
    zone; `min_score` (0 to 1) is the least confidence of the top prediction; `uncertain`
    keeps only the uncertain (True) or only the confident (False) classifications."""
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
        uploads = uploads.filter(Exists(matching) | Q(correction__label__icontains=label))
    if uploaded_from is not None:
        uploads = uploads.filter(last_uploaded_at__date__gte=uploaded_from)
    if uploaded_until is not None:
        uploads = uploads.filter(last_uploaded_at__date__lte=uploaded_until)
    if min_score is not None:
        uploads = uploads.filter(classification__top_score__gte=min_score)
    if uncertain is not None:
        rule = uncertain_q("classification__")
        uploads = uploads.filter(rule if uncertain else ~rule)
    return uploads.order_by("-last_uploaded_at", "-id")


def upload_get_for_user(
    *, user: AbstractBaseUser | AnonymousUser, upload_id: int, with_results: bool = True
) -> Upload:
    """The user's upload with this id; Http404 whether it is missing or someone else's.
    Without results, only the upload and its stored image are read (for the image files
    and deletes), not its classification and predictions."""
    if not user.is_authenticated:
        raise Http404("No such upload.")
    uploads = _uploads_with_results() if with_results else Upload.objects.select_related(
        "stored_image"
    )
    try:
        return uploads.get(user=user, pk=upload_id)
    except (Upload.DoesNotExist, ValueError, TypeError):
        raise Http404("No such upload.") from None


# An upload's predictions, best first, fetched for many uploads in one query.
RANKED_PREDICTIONS = Prefetch(
    "classification__predictions", queryset=Prediction.objects.order_by("rank")
)


def _uploads_with_results() -> QuerySet[Upload]:
    return Upload.objects.select_related(
        "stored_image", "classification", "correction"
    ).prefetch_related(RANKED_PREDICTIONS)


def job_list_for_user(
    *, user: AbstractBaseUser | AnonymousUser, kind: str | None = None
) -> QuerySet[Job]:
    """The user's background jobs, newest first."""
    if not user.is_authenticated:
        return Job.objects.none()
    jobs = Job.objects.filter(owner=user)
    if kind is not None:
        jobs = jobs.filter(kind=kind)
    return jobs.order_by("-created_at", "-id")


def job_get_for_user(
    *, user: AbstractBaseUser | AnonymousUser, job_id: int, kind: str | None = None
) -> Job:
    """The user's job with this id; Http404 whether it is missing or someone else's."""
    try:
        return job_list_for_user(user=user, kind=kind).get(pk=job_id)
    except (Job.DoesNotExist, ValueError, TypeError):
        raise Http404("No such job.") from None


def job_items(job: Job) -> QuerySet[JobItem]:
    """A job's items in order, with what the worker made of them."""
    return job.items.select_related("upload__classification").order_by("position")
