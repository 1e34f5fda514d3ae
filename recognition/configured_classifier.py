"""The one classifier of this process, configured from Django settings."""

import threading
from pathlib import Path

from django.conf import settings

from .engine.batching import BatchingClassifier
from .engine.classifier import Classifier

_lock = threading.Lock()
_classifiers: dict[tuple, Classifier] = {}


def get_classifier() -> Classifier:
    """One classifier per configuration: in production that is one per process; tests
    that point the settings elsewhere get their own, and the model stays loaded."""
    key = (
        Path(settings.RECOGNITION_MODELS_DIR),
        settings.RECOGNITION_MODEL,
        settings.RECOGNITION_TORCH_THREADS,
        settings.RECOGNITION_BACKEND,
        settings.RECOGNITION_MAX_BATCH,
        settings.RECOGNITION_BATCH_WAIT_MS,
        settings.RECOGNITION_BATCH_RUNNERS,
    )
    classifier = _classifiers.get(key)
    if classifier is None:
        with _lock:
            classifier = _classifiers.get(key)
            if classifier is None:
                classifier = _build(*key)
                _classifiers[key] = classifier
    return classifier


def _build(models_dir, model, threads, backend, max_batch, wait_ms, runners) -> Classifier:
    if max_batch > 1:
        return BatchingClassifier(
            models_dir,
            model=model,
            threads=threads,
            backend=backend,
            max_batch=max_batch,
            max_wait_ms=wait_ms,
            runners=runners,
        )
    return Classifier(models_dir, model=model, threads=threads, backend=backend)


def reset_classifier() -> None:
    """Close and forget every classifier, so the next call loads the model again."""
    with _lock:
        for classifier in _classifiers.values():
            classifier.close()
        _classifiers.clear()
