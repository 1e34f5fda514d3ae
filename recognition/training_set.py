"""What fine-tuning learns from (recognition/finetune.py): the stored pictures with an
accepted correction, labelled with it, and anchors, pictures the base model classified
confidently, labelled with its own answer, so the known categories are not forgotten.

"Confidently" is: not uncertain by recognition/uncertainty.py, and a top score of at
least ANCHOR_MIN_SCORE. A picture with a pending or accepted correction is never an
anchor (a rejected one says the model was right).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from .engine.manifest import Manifest
from .models import Correction, CorrectionStatus, Prediction
from .uncertainty import uncertain_q

# "Confidently classified": the model gave its answer at least this probability (and the
# result is not uncertain). 0.4 keeps the real photos the tests use that a person would
# call clearly recognised (espresso 0.84, missile 0.41) and drops the guesses (0.03-0.27).
ANCHOR_MIN_SCORE = 0.4
# The most confident anchors only: enough to hold the known categories in place.
MAX_ANCHORS = 2000


@dataclass(frozen=True)
class Picture:
    sha256: str
    path: str
    label: str
    corrected: bool  # False: an anchor


def training_set(base: Manifest) -> list[Picture]:
    """Accepted corrections first (by picture), then anchors, most confident first."""
    corrected = (
        Correction.objects.filter(status=CorrectionStatus.ACCEPTED)
        .values_list("upload__stored_image__sha256", "upload__stored_image__path", "label")
        .order_by("upload__stored_image__sha256", "label")
        .distinct()
    )
    pictures = [Picture(sha, path, label, True) for sha, path, label in corrected]
    not_anchors = Correction.objects.filter(
        status__in=(CorrectionStatus.PENDING, CorrectionStatus.ACCEPTED)
    ).values("upload__stored_image")
    anchors = (
        Prediction.objects.filter(
            rank=1,
            classification__model_name=base.name,
            classification__model_version=base.version,
            classification__top_score__gte=ANCHOR_MIN_SCORE,
        )
        .exclude(uncertain_q("classification__"))
        .exclude(classification__stored_image__in=not_anchors)
        .order_by("-classification__top_score", "classification__stored_image__sha256")
        .values_list(
            "classification__stored_image__sha256", "classification__stored_image__path", "index"
        )[:MAX_ANCHORS]
    )
    categories = base.categories
    pictures += [
        Picture(sha, path, categories[index], False)
        for sha, path, index in anchors
        if index < len(categories)
    ]
    return pictures


def training_set_sha256(pictures: list[Picture]) -> str:
    """Stable whatever order the rows came in: what was learnt from, not how it was read."""
    rows = sorted([p.sha256, p.label, p.corrected] for p in pictures)
    return hashlib.sha256(json.dumps(rows, ensure_ascii=False).encode()).hexdigest()
