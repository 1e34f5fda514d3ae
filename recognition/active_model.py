"""Which prepared model every web node and worker serves: the newest ActiveModel row.

The one place for the rule: activate() checks that the key is a prepared build (in this
node's models directory or published to the object store) that may be served, and
records what was active before, so rollback() can go back to it. Nodes notice a new row
by themselves (configured_classifier.py); nothing here touches a running classifier.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from . import published_models
from .engine import model_store, quantize
from .engine.manifest import ArtifactError, Manifest
from .models import ActiveModel
from .storage import StorageError


class ActivationRefused(Exception):
    """The key cannot become the active model; str() is one paragraph with the fix."""


def current() -> ActiveModel | None:
    """The newest activation, or None when no model was ever activated."""
    return ActiveModel.objects.order_by("-activated_at", "-id").first()


def current_key() -> str | None:
    row = current()
    return row.key if row is not None else None


def prepared_keys() -> list[str]:
    """Every build that could be activated: this node's and those in the object store."""
    keys = set(model_store.prepared_keys(_models_dir()))
    keys.update(published_models.published_keys())
    return sorted(keys)


def activate(key: str, *, user=None) -> ActiveModel:
    """Make `key` the active model of every node; returns the new row. Activating the
    model that is already active records nothing new."""
    check_activatable(key)
    with transaction.atomic():
        # Serialises concurrent activations, so each records the one before it.
        before = ActiveModel.objects.select_for_update().order_by("-activated_at", "-id").first()
        if before is not None and before.key == key:
            return before
        return ActiveModel.objects.create(
            key=key,
            previous_key=before.key if before is not None else "",
            activated_by=user if user is not None and user.is_authenticated else None,
            activated_at=timezone.now(),
        )


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
