"""Whether a classification is uncertain: the one rule, for pages, the API, the admin and
the filters alike.

Uncertain means the top-1 probability is below RECOGNITION_UNCERTAIN_BELOW, or the top-1
beats the second by less than RECOGNITION_UNCERTAIN_MARGIN. Rows store only the score and
the margin; the rule is applied when they are read, so new thresholds take effect at the
next start without rewriting a row. bench/uncertainty.py measured the defaults.
"""

from __future__ import annotations

from django.conf import settings
from django.db.models import Q


def is_uncertain(top_score: float, margin: float) -> bool:
    return (
        top_score < settings.RECOGNITION_UNCERTAIN_BELOW
        or margin < settings.RECOGNITION_UNCERTAIN_MARGIN
    )


def uncertain_q(prefix: str = "") -> Q:
    """The rule as a filter on Classification; `prefix` reaches it from another model,
    e.g. "classification__" from Upload. Negate it (~) for the certain ones."""
    return Q(**{f"{prefix}top_score__lt": settings.RECOGNITION_UNCERTAIN_BELOW}) | Q(
        **{f"{prefix}margin__lt": settings.RECOGNITION_UNCERTAIN_MARGIN}
    )


def margin_of(scores: list[float]) -> float:
    """Top-1 minus top-2 of probabilities ranked best first (the top-1 itself when there is
    no second), never below 0 even where float rounding would put it there."""
    if len(scores) < 2:
        return scores[0]
    return max(scores[0] - scores[1], 0.0)


# How a filter asks for them, in a query string: ?uncertain=true or ?uncertain=false.
UNCERTAIN_CHOICES = ("true", "false")


def uncertain_filter(value: str | None) -> bool | None:
    """A query-string value from UNCERTAIN_CHOICES as selectors take it; None: no filter."""
    return {"true": True, "false": False}.get(value or "")
