"""Corrections: the owner of a picture says what it really shows.

The one write path for them, for the API and the detail page alike. A label is either one
of the served model's categories (matched whatever its case) or, when none fits, the
owner's own words. Either way it is cleaned the same way first: Unicode NFKC (so a
full-width "ｃａｔ" and a "cat" are one label), runs of white space made one space, trimmed,
1 to `MAX_LABEL_LENGTH` characters, and no control characters.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from .configured_classifier import get_classifier
from .errors import ServiceError
from .models import Correction, CorrectionStatus, Upload
from .selectors import upload_get_for_user

MAX_LABEL_LENGTH = 100
# Tab, line feed and carriage return are white space (a pasted label may carry them);
# every other control character, and the bidirectional overrides that make text read
# differently from how it is stored, is refused.
_WHITESPACE_CONTROLS = {"\t", "\n", "\r"}
_BIDI_CONTROLS = {chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))}


class CorrectionRefused(ServiceError):
    """Refused with one of several codes, each with its own sentence."""


@dataclass(frozen=True)
class Category:
    """What a cleaned label means for the served model: one of its categories, or none."""

    label: str
    index: int | None
    model_key: str


def clean_label(text: str) -> str:
    """The label as it is stored, or CorrectionRefused saying what is wrong with it."""
    text = unicodedata.normalize("NFKC", text)
    if any(
        (unicodedata.category(char) == "Cc" and char not in _WHITESPACE_CONTROLS)
        or char in _BIDI_CONTROLS
        for char in text
    ):
        raise CorrectionRefused(
            "The label contains control characters; type it as plain text.",
            code="label_control_characters",
        )
    text = " ".join(text.split())
    if not text:
        raise CorrectionRefused(
            "Say what the picture shows: the label is empty.", code="label_empty"
        )
    if len(text) > MAX_LABEL_LENGTH:
        raise CorrectionRefused(
            f"The label is {len(text)} characters long; at most {MAX_LABEL_LENGTH} are accepted.",
            code="label_too_long",
        )
    return text


def categorise(label: str) -> Category:
    """`label` (already cleaned) as one of the served model's categories when it names
    one, whatever its case, else as the owner's own words. ImageNet names a few
    categories twice ("crane", the bird and the machine); the name means the first."""
    manifest = get_classifier().manifest()
    folded = label.casefold()
    for index, name in enumerate(manifest.categories):
        if name.casefold() == folded:
            return Category(name, index, manifest.key)
    return Category(label, None, manifest.key)


def correction_set(
    *, user: AbstractBaseUser, upload_id: int, label: str, category_only: bool = False
) -> Correction:
    """Record (or replace) the owner's correction of their upload; it waits for review.

    `category_only` is the detail page's guard against a typo becoming a new category:
    there a label of one's own words has to be asked for ("none of these")."""
    # Someone else's upload is a 404 whatever the label says.
    upload_get_for_user(user=user, upload_id=upload_id, with_results=False)
    category = categorise(clean_label(label))
    if category_only and category.index is None:
        raise CorrectionRefused(
            f"“{category.label}” is not one of the model's categories: pick one from the "
            "list, or choose “None of these” to use your own words.",
            code="not_a_category",
        )
    with transaction.atomic():
        # Locked, so a correction and a reclassification of the upload do not cross.
        upload = Upload.objects.select_for_update().select_related("classification").get(
            pk=upload_id, user=user
        )
        if category.label.casefold() == upload.classification.top_label.casefold():
            raise CorrectionRefused(
                f"“{category.label}” is already the model's answer for this picture; a "
                "correction names what it shows instead.",
                code="same_as_prediction",
            )
        correction, _ = Correction.objects.update_or_create(
            upload=upload,
            defaults={
                "user": upload.user,
                "classification": upload.classification,
                "label": category.label,
                "index": category.index,
                "model_key": category.model_key,
                "status": CorrectionStatus.PENDING,
                "created_at": timezone.now(),
                "reviewed_by": None,
                "reviewed_at": None,
            },
        )
    return correction


def correction_of(upload: Upload) -> Correction | None:
    """The upload's correction, None when it has none (read with the upload when the
    selectors fetched it, as they do)."""
    try:
        return upload.correction
    except Correction.DoesNotExist:
        return None


def correction_remove(*, user: AbstractBaseUser, upload_id: int) -> bool:
    """Withdraw the owner's correction of their upload; False when there was none."""
    upload = upload_get_for_user(user=user, upload_id=upload_id, with_results=False)
    deleted, _ = Correction.objects.filter(upload=upload).delete()
    return bool(deleted)
