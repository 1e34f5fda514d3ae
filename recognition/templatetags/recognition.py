"""Template filters for showing probabilities and durations, here and in the admin, and
whether a user may see the review statistics (for the navigation)."""

from __future__ import annotations

from django import template
from django.conf import settings

from .. import statistics

register = template.Library()


@register.filter
def percent(score: float) -> str:
    """0.8734 -> "87.3%": one decimal, so close scores stay distinguishable."""
    return f"{float(score) * 100:.1f}%"


@register.filter
def milliseconds(duration_ms: float) -> str:
    """9.8755 -> "9.9 ms": a tenth of a millisecond is finer than timings repeat."""
    return f"{float(duration_ms):.1f} ms"


@register.filter
def bar_width(score: float) -> str:
    """A CSS width, written without locale formatting (a comma would break it)."""
    return f"{min(max(float(score), 0.0), 1.0) * 100:.1f}%"


@register.simple_tag
def uncertainty_rule() -> str:
    """What the "uncertain" badge means, with the thresholds in force."""
    return (
        "The model is unsure of this picture: its top score is below "
        f"{percent(settings.RECOGNITION_UNCERTAIN_BELOW)}, or the first two scores are "
        f"less than {percent(settings.RECOGNITION_UNCERTAIN_MARGIN)} apart."
    )


@register.filter
def may_see_statistics(user) -> bool:
    return statistics.may_see_statistics(user)
