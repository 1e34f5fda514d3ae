"""Writes: the one way an image enters the service and the one way an upload leaves it.

Pages, the API and the admin all call `upload_classify` and `upload_delete`, so every
entry point gets the same limits, the same deduplication and the same cleanup.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.files import File
from django.core.files.base import ContentFile
from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import prefetch_related_objects
from django.utils import timezone

from . import active_model, storage, tasks
from .configured_classifier import get_classifier
from .engine import classifier as engine
from .engine.defaults import DEFAULT_TOP_K
from .engine.images import DecodedImage, ImageRejected, decode_image
from .errors import ServiceError, StorageFailed, UploadTooLarge
from .filenames import clean_filename
from .models import MAX_STORED_PREDICTIONS, Classification, Prediction, StoredImage, Upload
from .selectors import RANKED_PREDICTIONS, upload_get_for_user
from .uncertainty import margin_of

logger = logging.getLogger(__name__)

MAX_TOP_K = MAX_STORED_PREDICTIONS
# A row read before the transaction can vanish (a concurrent delete) before it starts;
# the whole upload is then simply done again.
_ATTEMPTS = 3


@dataclass(frozen=True)
class UploadOutcome:
    upload: Upload
    duplicate: bool  # this user had uploaded the same bytes before
    top_k: int

    @property
    def predictions(self) -> list[Prediction]:
        return list(self.upload.classification.predictions.all())[: self.top_k]


@dataclass(frozen=True)
class _ImageFacts:
    sha256: str
    path: str
    width: int
    height: int
    format: str
    byte_size: int


class _StaleRead(Exception):
    """Something read outside the transaction was gone inside it."""


def upload_classify(
    *, user: AbstractBaseUser, file: File, top_k: int = DEFAULT_TOP_K
) -> UploadOutcome:
    """Store and classify an uploaded image, or reuse what is known about the same bytes.

    Raises UploadTooLarge, engine.images.ImageRejected, engine.classifier.ModelUnavailable
    or StorageFailed, each with its status, code and message (errors.py). After any
    failure nothing new is left in the database or the file storage (but for a file whose
    database vanished mid-upload: see cleanup_orphans).
    """
    if not 1 <= top_k <= MAX_TOP_K:
        raise ValueError(f"top_k must be between 1 and {MAX_TOP_K}, not {top_k}.")
    data = _read_within_limit(file)
    sha256 = hashlib.sha256(data).hexdigest()
    filename = clean_filename(getattr(file, "name", None))
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            upload, duplicate = _upload_once(user, data, sha256, filename)
            break
        except _StaleRead:
            if attempt == _ATTEMPTS:
                raise RuntimeError("The image kept changing during the upload.") from None
    # The rows in hand are what was committed; only the ranked predictions are read back.
    prefetch_related_objects([upload], RANKED_PREDICTIONS)
    return UploadOutcome(upload=upload, duplicate=duplicate, top_k=top_k)


def upload_delete(*, user: AbstractBaseUser, upload_id: int) -> None:
    """Remove the user's upload; the image, its classifications and its files go with the
    last upload that refers to them."""
    with transaction.atomic():
        upload = upload_get_for_user(user=user, upload_id=upload_id, with_results=False)
        # Locking the image serialises this with uploads of the same bytes (PostgreSQL).
        stored = StoredImage.objects.select_for_update().get(pk=upload.stored_image_id)
        upload.delete()
        if stored.uploads.exists():
            return
        sha256, names = stored.sha256, [stored.path, storage.thumbnail_name(stored.sha256)]
        stored.delete()  # cascades to its classifications and their predictions
        # After the commit: a rolled-back delete must still find its files.
        transaction.on_commit(lambda: _delete_files_unless_adopted(sha256, names))


def _delete_files_unless_adopted(sha256: str, names: list[str]) -> None:
    # An upload of the same bytes may have committed a new row since the delete did, and
    # found these objects in place (it writes only what is missing): they are its now.
    if _is_referenced(sha256):
        return
    for name in names:
        storage.delete_quietly(name)


def _read_within_limit(file: File) -> bytes:
    limit = settings.RECOGNITION_MAX_UPLOAD_BYTES
    size = getattr(file, "size", None)
    if size is not None and size > limit:
        raise UploadTooLarge(limit)
    if not isinstance(file, File):
        file = File(file)
    chunks: list[bytes] = []
    total = 0
    for chunk in file.chunks():
        total += len(chunk)
        if total > limit:  # the reported size may be missing or wrong
            raise UploadTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def upload_classify_batch(
    *, user: AbstractBaseUser, files: Sequence[tuple[str, bytes]], top_k: int = DEFAULT_TOP_K
) -> list[UploadOutcome | ServiceError]:
    """`upload_classify` for many files at once (bulk import): the pictures the active
    model has not seen go through one forward pass together, then each is stored and
    recorded exactly as a single upload is. One outcome per file, in order: its
    UploadOutcome, or the ServiceError that refused it (too large, not an image).

    ModelUnavailable and StorageFailed are raised, not returned: no other file of the
    batch can succeed without the model or the store."""
    if not 1 <= top_k <= MAX_TOP_K:
        raise ValueError(f"top_k must be between 1 and {MAX_TOP_K}, not {top_k}.")
    classifier = get_classifier()
    model = classifier.identity()
    limit = settings.RECOGNITION_MAX_UPLOAD_BYTES
    outcomes: list[UploadOutcome | ServiceError | None] = [None] * len(files)
    hashes = {
        position: hashlib.sha256(data).hexdigest()
        for position, (_name, data) in enumerate(files)
        if len(data) <= limit
    }
    known = {
        stored.sha256: stored for stored in StoredImage.objects.filter(sha256__in=hashes.values())
    }
    classified = set(
        Classification.objects.filter(
            stored_image__in=known.values(), model_name=model.name, model_version=model.version
        ).values_list("stored_image__sha256", flat=True)
    )
    to_classify: dict[int, DecodedImage] = {}
    facts: dict[int, _ImageFacts] = {}
    for position, (_name, data) in enumerate(files):
        sha256 = hashes.get(position)
        if sha256 is None:
            outcomes[position] = UploadTooLarge(limit)
            continue
        stored = known.get(sha256)
        if stored is not None:
            facts[position] = _ImageFacts(
                sha256, stored.path, stored.width, stored.height, stored.format, stored.byte_size
            )
            if sha256 in classified:
                continue
        try:
            decoded = _decode_upload(data, classifier)
        except ImageRejected as exc:
            outcomes[position] = exc
            continue
        to_classify[position] = decoded
        facts.setdefault(position, _facts_of(sha256, decoded, len(data)))
    results = dict(
        zip(
            to_classify,
            classifier.classify([d.image for d in to_classify.values()], top_k=MAX_TOP_K),
        )
    )
    for position, (name, data) in enumerate(files):
        if outcomes[position] is not None:
            continue
        result = results.get(position)
        recognised = _Recognised(
            facts[position], result.model if result else model, result,
            new_image=facts[position].sha256 not in known,
        )
        try:
            upload, duplicate = _store_and_record(user, data, recognised, clean_filename(name))
        except _StaleRead:  # the image was deleted meanwhile: the single path starts over
            outcome = upload_classify(user=user, file=ContentFile(data, name=name), top_k=top_k)
            upload, duplicate = outcome.upload, outcome.duplicate
        outcomes[position] = UploadOutcome(upload=upload, duplicate=duplicate, top_k=top_k)
    done = [outcome for outcome in outcomes if isinstance(outcome, UploadOutcome)]
    prefetch_related_objects([outcome.upload for outcome in done], RANKED_PREDICTIONS)
    return outcomes  # type: ignore[return-value]  # every position is filled by now


def _upload_once(
    user: AbstractBaseUser, data: bytes, sha256: str, filename: str
) -> tuple[Upload, bool]:
    return _store_and_record(user, data, _recognise_unless_known(data, sha256), filename)


def _store_and_record(
    user: AbstractBaseUser, data: bytes, recognised: _Recognised, filename: str
) -> tuple[Upload, bool]:
    sha256 = recognised.facts.sha256
    name = recognised.facts.path
    wrote = _write_image(name, data)  # the file first: a row never points at nothing
    try:
        upload, duplicate = _record(user, recognised, filename)
    except BaseException:
        if wrote and not _is_referenced(sha256):
            storage.delete_quietly(name)
        raise
    # A concurrent delete of the last other upload may have removed the file meanwhile.
    # The rows are committed by now: a failure here must not claim nothing was saved.
    try:
        storage.save_if_missing(name, data)
    except OSError as exc:
        # The next upload of these bytes writes it again; cleanup_orphans reports it.
        logger.error("Image %s is recorded but could not be rewritten: %s", sha256, exc)
    return upload, duplicate


@dataclass(frozen=True)
class _Recognised:
    facts: _ImageFacts
    model: engine.ModelIdentity
    result: engine.Recognition | None  # None: this model's classification is stored
    new_image: bool  # no row had these bytes when we looked


def _recognise_unless_known(data: bytes, sha256: str) -> _Recognised:
    """What is known of these bytes, decoding and classifying them only if the active
    model has not classified them before."""
    classifier = get_classifier()
    stored = StoredImage.objects.filter(sha256=sha256).first()
    decoded = None
    if stored is None:
        decoded = _decode_upload(data, classifier)
        facts = _facts_of(sha256, decoded, len(data))
    else:
        facts = _ImageFacts(
            sha256, stored.path, stored.width, stored.height, stored.format, stored.byte_size
        )
    model = classifier.identity()
    known = stored is not None and Classification.objects.filter(
        stored_image=stored, model_name=model.name, model_version=model.version
    ).exists()
    result = None
    if not known:
        # Inference runs outside any transaction: SQLite has one writer at a time.
        decoded = decoded or _decode_upload(data, classifier)
        [result] = classifier.classify([decoded.image], top_k=MAX_TOP_K)
        model = result.model
    return _Recognised(facts, model, result, new_image=stored is None)


def _facts_of(sha256: str, decoded: DecodedImage, byte_size: int) -> _ImageFacts:
    return _ImageFacts(
        sha256=sha256,
        path=storage.image_name(sha256, decoded.format),
        width=decoded.width,
        height=decoded.height,
        format=decoded.format,
        byte_size=byte_size,
    )


def _record(user: AbstractBaseUser, recognised: _Recognised, filename: str) -> tuple[Upload, bool]:
    """The image, its classification and the user's upload, in one transaction."""
    result = recognised.result
    with transaction.atomic():
        stored, created = _get_or_create_stored_image(
            recognised.facts, probably_new=recognised.new_image
        )
        if created:
            # Off the request: a worker makes the thumbnail once the row is committed.
            transaction.on_commit(lambda: tasks.queue_thumbnail(stored.pk))
        if created and result is not None:
            # No other transaction can see the new image yet, so no classification or
            # upload of it can exist: plain inserts, no look-ups, no savepoints.
            classification = _create_classification(stored, result)
            return _create_upload(user, stored, classification, filename), False
        classification, classified_now = _get_or_create_classification(stored, recognised.model, result)
        if classified_now:
            # The active model's first result for an image others uploaded before: their
            # uploads show it too, as activation would have pointed them at it (README,
            # "Which result an upload shows").
            active_model.repoint_uploads_if_active(
                classification.model_name, classification.model_version, stored_image_ids=[stored.pk]
            )
        return _create_or_touch_upload(user, stored, classification, filename)


def _decode_upload(data: bytes, classifier: engine.Classifier) -> DecodedImage:
    # Off by default: bench/decode.py measured top-1 agreement with full decoding below
    # the 99 % such a shortcut must keep (README, "Performance").
    min_side = classifier.decode_side() if settings.RECOGNITION_JPEG_DRAFT else None
    return decode_image(data, max_pixels=settings.RECOGNITION_MAX_PIXELS, min_side=min_side)


def _write_image(name: str, data: bytes) -> bool:
    try:
        return storage.save_if_missing(name, data)
    except storage.StorageError as exc:  # full, read-only, store away or refusing: no row
        raise StorageFailed(exc) from exc


def _get_or_create_stored_image(facts: _ImageFacts, probably_new: bool) -> tuple[StoredImage, bool]:
    """The image's row, locked (PostgreSQL), and whether this transaction created it."""
    locked = StoredImage.objects.select_for_update()
    if not probably_new:
        stored = locked.filter(sha256=facts.sha256).first()
        if stored is not None:
            return stored, False
    try:
        with transaction.atomic():
            stored = StoredImage.objects.create(
                sha256=facts.sha256,
                path=facts.path,
                width=facts.width,
                height=facts.height,
                format=facts.format,
                byte_size=facts.byte_size,
            )
            return stored, True
    except IntegrityError:  # a concurrent upload of the same bytes got there first
        return locked.get(sha256=facts.sha256), False


def _get_or_create_classification(
    stored: StoredImage, model: engine.ModelIdentity, result: engine.Recognition | None
) -> tuple[Classification, bool]:
    """The image's classification by this model version, and whether this call made it."""
    existing = Classification.objects.filter(
        stored_image=stored, model_name=model.name, model_version=model.version
    ).first()
    if existing is not None:
        return existing, False
    if result is None:
        raise _StaleRead()
    try:
        with transaction.atomic():
            return _create_classification(stored, result), True
    except IntegrityError:  # the same image was classified concurrently by the same model
        return Classification.objects.get(
            stored_image=stored, model_name=model.name, model_version=model.version
        ), False


def _create_classification(stored: StoredImage, result: engine.Recognition) -> Classification:
    top = result.predictions[0]
    classification = Classification.objects.create(
        stored_image=stored,
        model_name=result.model.name,
        model_version=result.model.version,
        custom_weights=result.model.custom,
        inference_ms=max(result.inference_ms, 0.0),
        top_label=top.label,
        top_score=_probability(top.score),
        margin=_margin(result),
    )
    Prediction.objects.bulk_create(
        Prediction(
            classification=classification,
            rank=rank,
            label=prediction.label,
            index=prediction.index,
            score=_probability(prediction.score),
        )
        for rank, prediction in enumerate(result.predictions[:MAX_TOP_K], start=1)
    )
    return classification


def _create_upload(
    user: AbstractBaseUser, stored: StoredImage, classification: Classification, filename: str
) -> Upload:
    now = timezone.now()
    return Upload.objects.create(
        user=user,
        stored_image=stored,
        classification=classification,
        original_filename=filename,
        created_at=now,
        last_uploaded_at=now,
    )


def _create_or_touch_upload(
    user: AbstractBaseUser, stored: StoredImage, classification: Classification, filename: str
) -> tuple[Upload, bool]:
    mine = Upload.objects.select_for_update().filter(user=user, stored_image=stored)
    upload = mine.first()
    if upload is None:
        try:
            with transaction.atomic():
                return _create_upload(user, stored, classification, filename), False
        except IntegrityError:  # the same user sent the same bytes twice at once
            upload = mine.get()
    upload.stored_image = stored
    upload.classification = classification
    upload.last_uploaded_at = max(timezone.now(), upload.created_at)
    upload.save(update_fields=["classification", "last_uploaded_at"])
    return upload, True


def _is_referenced(sha256: str) -> bool:
    try:
        return StoredImage.objects.filter(sha256=sha256).exists()
    except DatabaseError:
        # Unsure: an orphan file is harmless, deleting a referenced one is not.
        logger.exception("Could not check whether image %s is still referenced", sha256)
        return True


def _probability(score: float) -> float:
    # float32 softmax can overshoot 1.0 by an ulp; the database insists on [0, 1].
    return min(max(float(score), 0.0), 1.0)


def _margin(result: engine.Recognition) -> float:
    # The engine ranks the full softmax, so its first two are the model's two best.
    return margin_of([_probability(p.score) for p in result.predictions[:2]])


def classifications_record(
    recognised: Sequence[tuple[StoredImage, engine.Recognition]],
) -> list[Classification]:
    """Record each image's classification by the model that made it, in bulk (the
    reclassification job): a new row, or the one that image and model version already
    have, recomputed in place with its predictions replaced, so the unique row stays
    and every upload pointing at it shows the new result. Idempotent; one transaction.
    Returns the rows in the order given."""
    fields = ["custom_weights", "inference_ms", "top_label", "top_score", "margin"]
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            with transaction.atomic():
                existing = {
                    (row.stored_image_id, row.model_name, row.model_version): row
                    for row in Classification.objects.select_for_update().filter(
                        stored_image__in=[stored.pk for stored, _ in recognised],
                        model_name__in={result.model.name for _, result in recognised},
                        model_version__in={result.model.version for _, result in recognised},
                    )
                }
                rows: dict[tuple, Classification] = {}
                predictions: dict[tuple, engine.Recognition] = {}
                for stored, result in recognised:
                    key = (stored.pk, result.model.name, result.model.version)
                    row = existing.get(key) or rows.get(key) or Classification(
                        stored_image=stored,
                        model_name=result.model.name,
                        model_version=result.model.version,
                    )
                    row.custom_weights = result.model.custom
                    row.inference_ms = max(result.inference_ms, 0.0)
                    row.top_label = result.predictions[0].label
                    row.top_score = _probability(result.predictions[0].score)
                    row.margin = _margin(result)
                    rows[key], predictions[key] = row, result
                Classification.objects.bulk_create([r for r in rows.values() if r.pk is None])
                recomputed = [row for key, row in rows.items() if key in existing]
                Classification.objects.bulk_update(recomputed, fields)
                Prediction.objects.filter(classification__in=recomputed).delete()
                Prediction.objects.bulk_create(
                    Prediction(
                        classification=rows[key],
                        rank=rank,
                        label=prediction.label,
                        index=prediction.index,
                        score=_probability(prediction.score),
                    )
                    for key, result in predictions.items()
                    for rank, prediction in enumerate(result.predictions[:MAX_TOP_K], start=1)
                )
            break
        except IntegrityError:
            # An upload classified one of these images with the same model meanwhile:
            # the next attempt finds its row and recomputes it in place.
            if attempt == _ATTEMPTS:
                raise
    return [rows[(stored.pk, result.model.name, result.model.version)] for stored, result in recognised]
