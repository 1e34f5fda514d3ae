"""Which prepared model every web node and worker serves: the newest ActiveModel row.

The one place for the rule: activate() checks that the key is a prepared build (in this
node's models directory or published to the object store) that may be served, and
records what was active before, so rollback() can go back to it. Nodes notice a new row
by themselves (configured_classifier.py); nothing here touches a running classifier.
"""

from __future__ import annotations

from pathlib import Path

from collections.abc import Iterable

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Subquery
from django.utils import timezone

from . import published_models
from .engine import model_store, quantize
from .engine.manifest import MANIFEST_NAME, ArtifactError, Manifest
from .models import ActiveModel, Classification, Upload
from .storage import StorageError


class ActivationRefused(Exception):
    """The key cannot become the active model; str() is one paragraph with the fix."""


def current() -> ActiveModel | None:
    """The newest activation, or None when no model was ever activated."""
    return ActiveModel.objects.order_by("-activated_at", "-id").first()


def current_key() -> str | None:
    row = current()
    return row.key if row is not None else None


def active_key() -> str | None:
    """The key every process without a pin serves: the newest row's, or with no row the
    only build prepared here (what model_store.resolve serves then)."""
    return current_key() or model_store.sole_build(_models_dir())


def served_key() -> str | None:
    """The key this process classifies new uploads with, found without loading the
    model: RECOGNITION_MODEL when it pins one (a bare name resolved to its newest build
    here), else active_key()."""
    pinned = settings.RECOGNITION_MODEL
    if not pinned:
        return active_key()
    if (_models_dir() / pinned / MANIFEST_NAME).is_file():
        return pinned
    try:
        return model_store.resolve(_models_dir(), pinned).key
    except ArtifactError:
        return pinned  # a key only the object store holds: it is fetched when served


def prepared_keys() -> list[str]:
    """Every build that could be activated: this node's and those in the object store."""
    keys = set(model_store.prepared_keys(_models_dir()))
    keys.update(published_models.published_keys())
    return sorted(keys)


def activate(key: str, *, user=None) -> ActiveModel:
    """Make `key` the active model of every node; returns the new row. Activating the
    model that is already active records nothing new."""
    manifest = check_activatable(key)
    with transaction.atomic():
        # Serialises concurrent activations, so each records the one before it.
        before = ActiveModel.objects.select_for_update().order_by("-activated_at", "-id").first()
        if before is not None and before.key == key:
            return before
        row = ActiveModel.objects.create(
            key=key,
            previous_key=before.key if before is not None else "",
            activated_by=user if user is not None and user.is_authenticated else None,
            activated_at=timezone.now(),
        )
        # Uploads show the active model's classification wherever it has one: switched
        # here, with the row, so no page ever shows the new model beside old results.
        repoint_uploads(manifest.name, manifest.version)
        return row


def repoint_uploads(
    model_name: str, model_version: str, *, stored_image_ids: Iterable[int] | None = None
) -> int:
    """Point every upload (of these images, or of all) whose image has a classification
    by this model version at that classification, in one UPDATE; returns how many moved.
    An upload whose image this version never classified keeps what it shows."""
    by_version = Classification.objects.filter(
        stored_image=OuterRef("stored_image"), model_name=model_name, model_version=model_version
    )
    uploads = Upload.objects.filter(Exists(by_version)).exclude(
        classification__model_name=model_name, classification__model_version=model_version
    )
    if stored_image_ids is not None:
        uploads = uploads.filter(stored_image_id__in=list(stored_image_ids))
    # The unique constraint allows one classification per image and version.
    return uploads.update(classification=Subquery(by_version.values("pk")[:1]))


def repoint_uploads_if_active(
    model_name: str, model_version: str, *, stored_image_ids: Iterable[int] | None = None
) -> int:
    """repoint_uploads, but only while this version is the active one: a result that a
    node still serving the previous model (in the seconds after a switch), or a
    reclassification with another version, records moves nobody."""
    if active_key() != f"{model_name}-{model_version}":
        return 0
    return repoint_uploads(model_name, model_version, stored_image_ids=stored_image_ids)


def rollback(*, user=None) -> ActiveModel:
    """Activate again what was active before the current model."""
    row = current()
    if row is None or not row.previous_key:
        raise ActivationRefused(
            "There is nothing to roll back to: no model was active before "
            f"{row.key if row else 'now'}. Activate one with `python manage.py activate_model KEY`."
        )
    return activate(row.previous_key, user=user)


def check_activatable(key: str) -> Manifest:
    """The manifest of `key` if it may become the active model, else ActivationRefused."""
    manifest = _prepared_manifest(key)
    try:
        quantize.check_may_be_active(manifest)
    except ArtifactError as exc:
        raise ActivationRefused(str(exc)) from None
    return manifest


def prepared_manifest(key: str) -> Manifest:
    """The manifest of a prepared build (here or in the store), whether or not it may
    be served as the active model; ActivationRefused naming the prepared ones if none."""
    return _prepared_manifest(key)


def _prepared_manifest(key: str) -> Manifest:
    try:
        manifest = _find_manifest(key)
        if manifest is not None and manifest.key == key:
            return manifest
        keys = prepared_keys()
    except StorageError as exc:
        raise ActivationRefused(
            f"Whether {key!r} is published cannot be told: the object store cannot be "
            f"reached or refuses ({exc}). Check AWS_S3_ENDPOINT_URL, the AWS_* keys and "
            "RECOGNITION_S3_BUCKET, then try again; nothing was activated."
        ) from None
    listed = ", ".join(keys) if keys else "none yet: run `python manage.py prepare_model`"
    raise ActivationRefused(
        f"{key!r} is not a prepared model, neither in this node's models directory nor "
        f"in the object store. Prepared models: {listed}."
    )


def _find_manifest(key: str) -> Manifest | None:
    try:
        return Manifest.read(_models_dir() / key)
    except ArtifactError:
        return published_models.read_manifest(key)


def _models_dir() -> Path:
    return Path(settings.RECOGNITION_MODELS_DIR)
