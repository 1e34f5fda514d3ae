"""The one classifier of this process, configured from Django settings."""

import threading

from django.conf import settings

from .engine.service import Classifier

_lock = threading.Lock()
_classifier: Classifier | None = None


def get_classifier() -> Classifier:
    global _classifier
    if _classifier is None:
        with _lock:
            if _classifier is None:
                _classifier = Classifier(
                    settings.RECOGNITION_MODELS_DIR,
                    model=settings.RECOGNITION_MODEL,
                    threads=settings.RECOGNITION_TORCH_THREADS,
                )
    return _classifier


def reset_classifier() -> None:
    """Forget the process's classifier, so the next call reads settings again (tests)."""
    global _classifier
    with _lock:
        _classifier = None
