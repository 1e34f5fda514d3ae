"""Template filters for showing probabilities."""

from __future__ import annotations

from django import template

register = template.Library()


@register.filter
def percent(score: float) -> str:
    """0.8734 -> "87.3%": one decimal, so close scores stay distinguishable."""
    return f"{float(score) * 100:.1f}%"


@register.filter
def bar_width(score: float) -> str:
    """A CSS width, written without locale formatting (a comma would break it)."""
    return f"{min(max(float(score), 0.0), 1.0) * 100:.1f}%"
