"""Values every page template can use: the active model for the footer, and whether
people may sign themselves up."""

from __future__ import annotations

import logging

from django.conf import settings
from django.http import HttpRequest

from .configured_classifier import get_classifier
from .engine.classifier import ModelIdentity, ModelUnavailable

logger = logging.getLogger(__name__)


def recognition(request: HttpRequest) -> dict[str, object]:
    return {
        "active_model": _active_model(),
        "signup_allowed": settings.RECOGNITION_ALLOW_SIGNUP,
    }


def _active_model() -> ModelIdentity | None:
    try:
        return get_classifier().identity()
    except ModelUnavailable:
        return None
    except Exception:
        # The footer must never take a page down with it.
        logger.exception("Could not read the active model for the page footer")
        return None
