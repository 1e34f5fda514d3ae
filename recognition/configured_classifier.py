"""The one classifier of this process, configured from Django settings, serving the
active model (recognition/active_model.py) and switching to a newly activated one by
itself.

Each process reads the active row at most every RECOGNITION_MODEL_CHECK_SECONDS (when a
request asks for the classifier, and from the worker's periodic sweep), so a new model is
served by every node within that bound after the first request or tick past it. A model
missing from the local models directory is fetched from the object store first and
verified; one that cannot be fetched, verified or loaded is refused with an ERROR line
and the model loaded before goes on serving. RECOGNITION_MODEL pins a model instead.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.db import DatabaseError

from . import published_models
from .engine.batching import BatchingClassifier
from .engine.classifier import Classifier, ModelUnavailable
from .engine import model_store
from .engine.backends import BackendError
from .engine.manifest import ArtifactError, ModelNotPrepared
from .storage import StorageError

logger = logging.getLogger(__name__)

# A refused activation is tried again after this long (or at once when another row is
# written): a fix in the store is picked up without re-downloading on every check.
RETRY_REFUSED_SECONDS = 60.0

_lock = threading.Lock()


@dataclass
class _Serving:
    classifier: Classifier
    pinned: str | None
    models_dir: Path
    backend: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    checked_at: float | None = None  # monotonic time of the last completed check
    seen_row: int | None = None  # the newest ActiveModel row at the last check
    refused: int | None = None  # the ActiveModel row last refused
    refused_at: float = 0.0
    warned_database: bool = False


_serving: dict[tuple, _Serving] = {}


def get_classifier() -> Classifier:
    """One classifier per configuration: in production that is one per process; tests
    that point the settings elsewhere get their own, and the model stays loaded."""
    serving = _serving_for_settings()
    _check(serving, force=False)
    return serving.classifier


def refresh_active_model() -> str | None:
    """Check the active row now (the worker's periodic tick) and switch if it changed;
    returns the key serving afterwards, if any."""
    serving = _serving_for_settings()
    _check(serving, force=True)
    return serving.classifier.loaded_key()


def reset_classifier() -> None:
    """Close and forget every classifier, so the next call loads the model again."""
    with _lock:
        for serving in _serving.values():
            serving.classifier.close()
        _serving.clear()


def _serving_for_settings() -> _Serving:
    key = (
        Path(settings.RECOGNITION_MODELS_DIR),
        settings.RECOGNITION_MODEL,
        settings.RECOGNITION_TORCH_THREADS,
        settings.RECOGNITION_BACKEND,
        settings.RECOGNITION_MAX_BATCH,
        settings.RECOGNITION_BATCH_WAIT_MS,
        settings.RECOGNITION_BATCH_RUNNERS,
        settings.RECOGNITION_MAX_QUEUE,
        settings.RECOGNITION_QUEUE_TIMEOUT_S,
    )
    serving = _serving.get(key)
    if serving is None:
        with _lock:
            serving = _serving.get(key)
            if serving is None:
                serving = _Serving(_build(*key), key[1], key[0], key[3])
                _serving[key] = serving
    return serving


def _check(serving: _Serving, *, force: bool) -> None:
    if not force and not _due(serving):
        return
    # The first check blocks (nothing may be served before it); later ones run in one
    # thread while the others go on with the model serving now.
    if not serving.lock.acquire(blocking=force or serving.checked_at is None):
        return
    try:
        if force or _due(serving):
            _switch_if_activated(serving)
            serving.checked_at = time.monotonic()
    finally:
        serving.lock.release()


def _due(serving: _Serving) -> bool:
    if serving.checked_at is None:
        return True
    if serving.pinned:
        return False
    return time.monotonic() - serving.checked_at >= settings.RECOGNITION_MODEL_CHECK_SECONDS


def _switch_if_activated(serving: _Serving) -> None:
    classifier = serving.classifier
    if serving.pinned:
        # Only the first check: a pinned key missing here may still be in the store.
        _fetch_quietly(serving, serving.pinned)
        return
    from . import active_model  # models: imported once the app registry is ready

    try:
        row = active_model.current()
    except DatabaseError as exc:
        log = logger.debug if serving.warned_database else logger.warning
        log("Cannot read the active model (%s); serving %s", exc, classifier.loaded_key())
        serving.warned_database = True
        return
    if row is None:
        return  # nothing activated: the only build prepared here (model_store.resolve)
    new_row, serving.seen_row = row.pk != serving.seen_row, row.pk
    if classifier.loaded_key() == row.key and classifier.model == row.key:
        if new_row:  # activated again (a rollback to what this process kept): say so too
            logger.info("Serving model %s", row.key)
        return
    now = time.monotonic()
    if serving.refused == row.pk and now - serving.refused_at < RETRY_REFUSED_SECONDS:
        return
    try:
        published_models.ensure_local(serving.models_dir, row.key, serving.backend)
        classifier.select(row.key)
    except (ModelUnavailable, ArtifactError, BackendError, OSError) as exc:
        # OSError: the store (StorageError) or this node's own disk (full, not writable).
        serving.refused, serving.refused_at = row.pk, now
        kept = classifier.loaded_key()
        if kept is None:
            classifier.model = row.key  # requests answer 503 with this model's fault
        logger.error(
            "Refused to switch to the active model %s (activated %s): %s Still serving %s.",
            row.key,
            row.activated_at.isoformat(timespec="seconds"),
            exc,
            kept or "no model",
        )
        return
    serving.refused = None


def _fetch_quietly(serving: _Serving, model: str) -> None:
    try:
        if model_store.resolve(serving.models_dir, model).key != model:
            return  # a model name, resolved to a build here: nothing to fetch
    except ArtifactError:
        pass
    try:
        published_models.ensure_local(serving.models_dir, model, serving.backend)
    except (ModelNotPrepared, BackendError):
        return  # not in the store either, or no such backend: the classifier's load says so
    except (ArtifactError, StorageError) as exc:
        # The classifier's own load then reports what is missing (503 with the fix).
        logger.error("Cannot fetch the pinned model %s: %s", model, exc)


def _build(
    models_dir, model, threads, backend, max_batch, wait_ms, runners, max_queue, queue_timeout
) -> Classifier:
    if max_batch > 1:
        return BatchingClassifier(
            models_dir,
            model=model,
            threads=threads,
            backend=backend,
            max_batch=max_batch,
            max_wait_ms=wait_ms,
            runners=runners,
            max_queue=max_queue,
            wait_timeout=queue_timeout,
        )
    return Classifier(models_dir, model=model, threads=threads, backend=backend)
