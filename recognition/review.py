"""The review queue: reviewers judge owners' corrections and the results the model is
unsure of, and every decision is recorded.

Reviewers are the users with the `recognition.review_corrections` permission (the
"Reviewers" group gives it; superusers have it). It is the only way anyone sees another
user's pictures, and only the pictures the queue would show: those with a correction or
an uncertain result. To everyone else the queue and those pictures do not exist (404).

What waits in the queue, least confident result first:
- a pending correction: the owner's label, to accept, reject or replace ("edit");
- an uncertain result nobody has corrected or reviewed yet: the model's own label, to
  accept (it is right), reject (it is wrong) or replace with the right one, which becomes
  an accepted correction given by the reviewer.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.db import transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.http import Http404
from django.utils import timezone

from .corrections import categorise, clean_label, correction_of
from .errors import ServiceError
from .models import (
    Classification,
    Correction,
    CorrectionStatus,
    Review,
    ReviewDecision,
    Upload,
)
from .selectors import RANKED_PREDICTIONS
from .uncertainty import uncertain_q

REVIEW_PERMISSION = "recognition.review_corrections"
QUEUE_LENGTH = 20


class ReviewRefused(ServiceError):
    """Refused with one of several codes, each with its own sentence."""


@dataclass(frozen=True)
class QueueItem:
    upload: Upload
    classification: Classification
    # The label under review: the owner's correction, or the model's answer.
    proposed_label: str
    correction: Correction | None

    @property
    def score(self) -> float:
        return self.classification.top_score


def is_reviewer(user: AbstractBaseUser | AnonymousUser) -> bool:
    return user.is_authenticated and user.is_active and user.has_perm(REVIEW_PERMISSION)


def require_reviewer(user: AbstractBaseUser | AnonymousUser) -> None:
    """Http404 for anyone who may not review: the queue is not there for them."""
    if not is_reviewer(user):
        raise Http404("No such page.")


def reviewable_uploads() -> QuerySet[Upload]:
    """Every upload the queue may show: one with a correction, or an uncertain result."""
    # One row per upload: the correction is one-to-one, the classification a foreign key.
    return Upload.objects.filter(Q(correction__isnull=False) | uncertain_q("classification__"))


def reviewable_upload(*, user: AbstractBaseUser | AnonymousUser, upload_id: int) -> Upload:
    """The upload for a reviewer's eyes; Http404 for anyone else, or if the queue would
    never show it."""
    require_reviewer(user)
    try:
        return reviewable_uploads().select_related("stored_image").get(pk=upload_id)
    except (Upload.DoesNotExist, ValueError, TypeError):
        raise Http404("No such picture.") from None


def queue(*, user: AbstractBaseUser | AnonymousUser, limit: int = QUEUE_LENGTH) -> list[QueueItem]:
    """What waits for review, least confident first (the owners' corrections and the
    unsure results together), at most `limit` items."""
    require_reviewer(user)
    corrections = (
        _pending_corrections()
        .select_related("upload__stored_image", "classification")
        .prefetch_related("classification__predictions")
        .order_by("classification__top_score", "id")[:limit]
    )
    unsure = (
        _unreviewed_unsure_uploads()
        .select_related("stored_image", "classification")
        .prefetch_related(RANKED_PREDICTIONS)
        .order_by("classification__top_score", "id")[:limit]
    )
    items = [
        QueueItem(c.upload, c.classification, c.label, c) for c in corrections
    ] + [QueueItem(u, u.classification, u.classification.top_label, None) for u in unsure]
    items.sort(key=lambda item: (item.score, item.upload.pk))
    return items[:limit]


def queue_size(*, user: AbstractBaseUser | AnonymousUser) -> int:
    require_reviewer(user)
    return _pending_corrections().count() + _unreviewed_unsure_uploads().count()


# The queue's two parts, one rule each, for the list and its count alike.
def _pending_corrections() -> QuerySet[Correction]:
    return Correction.objects.filter(status=CorrectionStatus.PENDING)


def _unreviewed_unsure_uploads() -> QuerySet[Upload]:
    reviewed = Review.objects.filter(
        upload=OuterRef("pk"), classification=OuterRef("classification")
    )
    return Upload.objects.filter(
        uncertain_q("classification__"), correction__isnull=True
    ).exclude(Exists(reviewed))


def review_decide(
    *,
    reviewer: AbstractBaseUser,
    upload_id: int,
    decision: str,
    label: str = "",
) -> Review:
    """Record a reviewer's decision on the queue's item for this upload. `label` is the
    reviewer's own for "edited" (cleaned and matched to a category as an owner's is).
    ReviewRefused when the item has left the queue (someone decided first)."""
    require_reviewer(reviewer)
    if decision not in ReviewDecision.values:
        raise ReviewRefused("Decide accept, reject or edit.", code="bad_decision")
    category = categorise(clean_label(label)) if decision == ReviewDecision.EDITED else None
    now = timezone.now()
    with transaction.atomic():
        # Locked, as the owner's corrections lock it: two decisions on one picture, or a
        # decision and the owner's new correction, happen one after the other.
        upload = reviewable_upload(user=reviewer, upload_id=upload_id)
        upload = Upload.objects.select_for_update().get(pk=upload.pk)
        correction = correction_of(upload)
        if correction is not None:
            return _decide_correction(reviewer, upload, correction, decision, category, now)
        return _decide_unsure_result(reviewer, upload, decision, category, now)


def _decide_correction(reviewer, upload, correction, decision, category, now) -> Review:
    if correction.status != CorrectionStatus.PENDING:
        raise _already_decided()
    proposed = correction.label
    if decision == ReviewDecision.EDITED:
        correction.label, correction.index = category.label, category.index
        correction.model_key = category.model_key
    accepted = decision in (ReviewDecision.ACCEPTED, ReviewDecision.EDITED)
    correction.status = CorrectionStatus.ACCEPTED if accepted else CorrectionStatus.REJECTED
    correction.reviewed_by, correction.reviewed_at = reviewer, now
    correction.save()
    return Review.objects.create(
        upload=upload,
        classification=correction.classification,
        correction=correction,
        proposed_label=proposed,
        decision=decision,
        label=correction.label if accepted else "",
        reviewer=reviewer,
        created_at=now,
    )


def _decide_unsure_result(reviewer, upload, decision, category, now) -> Review:
    classification = upload.classification
    if Review.objects.filter(upload=upload, classification=classification).exists():
        raise _already_decided()
    proposed = classification.top_label
    if decision == ReviewDecision.EDITED and category.label.casefold() == proposed.casefold():
        decision = ReviewDecision.ACCEPTED  # "edited" to the model's own answer
    correction = None
    if decision == ReviewDecision.EDITED:
        correction = Correction.objects.create(
            upload=upload,
            user=reviewer,
            classification=classification,
            label=category.label,
            index=category.index,
            model_key=category.model_key,
            status=CorrectionStatus.ACCEPTED,
            created_at=now,
            reviewed_by=reviewer,
            reviewed_at=now,
        )
    settled = {
        ReviewDecision.ACCEPTED: proposed,
        ReviewDecision.EDITED: category.label if category else "",
        ReviewDecision.REJECTED: "",
    }[decision]
    return Review.objects.create(
        upload=upload,
        classification=classification,
        correction=correction,
        proposed_label=proposed,
        decision=decision,
        label=settled,
        reviewer=reviewer,
        created_at=now,
    )


def _already_decided() -> ReviewRefused:
    return ReviewRefused(
        "Someone has already decided on this picture; it left the queue.",
        code="already_reviewed",
    )
