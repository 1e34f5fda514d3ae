"""The one classifier of this process, configured from Django settings."""

import threading
from pathlib import Path

from django.conf import settings

from .engine.service import Classifier

_lock = threading.Lock()
_classifiers: dict[tuple, Classifier] = {}


def get_classifier() -> Classifier:
    """One classifier per configuration: in production that is one per process; tests
    that point the settings elsewhere get their own, and the model stays loaded."""
    key = (
        Path(settings.RECOGNITION_MODELS_DIR),
        settings.RECOGNITION_MODEL,
        settings.RECOGNITION_TORCH_THREADS,
    )
    classifier = _classifiers.get(key)
    if classifier is None:
        with _lock:
            classifier = _classifiers.get(key)
            if classifier is None:
                classifier = Classifier(key[0], model=key[1], threads=key[2])
                _classifiers[key] = classifier
    return classifier


def reset_classifier() -> None:
    """Forget every classifier, so the next call loads the model again."""
    with _lock:
        _classifiers.clear()
