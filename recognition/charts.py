"""The statistics page's charts as inline SVG, drawn here on the server: no script, no
chart library. Each is 360 units wide with a viewBox, so it fills the width of a 360 px
phone at its natural size and scales up from there; its colours are classes of site.css.
Every bar or point has a <title> with its numbers, and the page repeats them in a table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from .statistics import Confusion, LabelCorrections, ReliabilityBin, UncertainTrend
from .templatetags.recognition import percent

WIDTH = 360
PAD = 8
FONT = 14  # as site.css sets it for .chart text: about 13 px on a 360 px screen
# Long labels are cut in the chart (the table under it has them whole).
MAX_LABEL_CHARS = 30


@dataclass(frozen=True)
class Bar:
    label: str
    fraction: float  # of the full bar length, 0 to 1
    value: str  # the number written beside the bar


def _svg(
    chart_id: str, title: str, description: str, height: float, body: SafeString
) -> SafeString:
    return format_html(
        '<svg class="chart" viewBox="0 0 {} {}" width="100%" role="img" '
        'aria-labelledby="{}-title {}-desc" xmlns="http://www.w3.org/2000/svg">'
        '<title id="{}-title">{}</title><desc id="{}-desc">{}</desc>{}</svg>',
        WIDTH, _n(height), chart_id, chart_id, chart_id, title, chart_id, description, body,
    )


def _n(number: float) -> str:
    """A coordinate as SVG reads it, never with a locale's decimal comma."""
    return f"{number:.1f}".removesuffix(".0")


def _cut(label: str) -> str:
    return label if len(label) <= MAX_LABEL_CHARS else label[: MAX_LABEL_CHARS - 1] + "…"


def horizontal_bars(chart_id: str, title: str, description: str, bars: Sequence[Bar]) -> SafeString:
    """One row per bar, its label above it and its value at the right: long labels stay
    readable on a narrow screen."""
    row, track = 40, WIDTH - 2 * PAD
    rows = format_html_join(
        "",
        '<g><text class="chart-text" x="{}" y="{}">{}</text>'
        '<text class="chart-text chart-value" x="{}" y="{}" text-anchor="end">{}</text>'
        '<rect class="chart-track" x="{}" y="{}" width="{}" height="14" rx="2"></rect>'
        '<rect class="chart-bar" x="{}" y="{}" width="{}" height="14" rx="2">'
        "<title>{}: {}</title></rect></g>",
        (
            (
                PAD, _n(i * row + FONT), _cut(bar.label),
                WIDTH - PAD, _n(i * row + FONT), bar.value,
                PAD, _n(i * row + FONT + 5), track,
                PAD, _n(i * row + FONT + 5), _n(track * bar.fraction), bar.label, bar.value,
            )
            for i, bar in enumerate(bars)
        ),
    )
    return _svg(chart_id, title, description, len(bars) * row, rows)


def correction_rate_chart(rows: Sequence[LabelCorrections]) -> SafeString:
    bars = [
        Bar(r.label, r.rate, f"{percent(r.rate)} ({r.corrections} of {r.uploads})") for r in rows
    ]
    return horizontal_bars(
        "correction-rate-chart",
        "Correction rate per predicted label",
        "Share of the uploads with each top label that carry a pending or accepted correction.",
        bars,
    )


def confusion_chart(rows: Sequence[Confusion]) -> SafeString:
    most = max((r.count for r in rows), default=1)
    bars = [
        Bar(
            f"{r.predicted} → {r.corrected}", r.count / most, f"{r.count} ({r.accepted} accepted)"
        )
        for r in rows
    ]
    return horizontal_bars(
        "confusion-chart",
        "Most frequent confusions",
        "Corrections per pair of the model's label and the owner's, longest bar the most frequent.",
        bars,
    )


# The plots with axes: the area inside them, in viewBox units.
LEFT, RIGHT, TOP, BOTTOM = 54, WIDTH - PAD, 10, 38


def _axes(height: float, y_name: str, x_labels: Sequence[tuple[float, str, str]]) -> SafeString:
    """Grid lines at 0, 50 and 100 % up the plot, and labels along the bottom: x positions
    (0 to 1 of the width) with their text and anchor."""
    plot_h = height - TOP - BOTTOM
    grid = format_html_join(
        "",
        '<line class="chart-grid" x1="{}" y1="{}" x2="{}" y2="{}"></line>'
        '<text class="chart-text" x="{}" y="{}" text-anchor="end">{}</text>',
        (
            (LEFT, _n(y), RIGHT, _n(y), LEFT - 4, _n(y + FONT / 3), f"{share}%")
            for share in (0, 50, 100)
            for y in [TOP + plot_h * (1 - share / 100)]
        ),
    )
    x_text = format_html_join(
        "",
        '<text class="chart-text" x="{}" y="{}" text-anchor="{}">{}</text>',
        (
            (_n(LEFT + (RIGHT - LEFT) * x), _n(height - BOTTOM + FONT + 4), anchor, text)
            for x, text, anchor in x_labels
        ),
    )
    return format_html(
        '{}{}<text class="chart-text chart-axis-name" x="{}" y="{}" text-anchor="middle" '
        'transform="rotate(-90 {} {})">{}</text>',
        grid, x_text, 12, _n(TOP + plot_h / 2), 12, _n(TOP + plot_h / 2), y_name,
    )


def uncertain_chart(trend: UncertainTrend) -> SafeString:
    """A bar per period, placed by its date, so periods without classifications are gaps."""
    height = 220
    plot_h = height - TOP - BOTTOM
    slots = trend.offset(trend.rows[-1]) + 1
    slot = (RIGHT - LEFT) / slots

    def bar_height(share: float) -> float:
        return max(plot_h * share, 1.5)  # a period with none uncertain still shows, flat

    bars = format_html_join(
        "",
        '<rect class="chart-bar" x="{}" y="{}" width="{}" height="{}">'
        "<title>{} {}: {} of {} uncertain ({})</title></rect>",
        (
            (
                _n(LEFT + slot * trend.offset(row) + slot * 0.1),
                _n(TOP + plot_h - bar_height(row.share)),
                _n(max(slot * 0.8, 0.5)),
                _n(bar_height(row.share)),
                trend.period.capitalize(), row.start.isoformat(), row.uncertain,
                row.classifications, percent(row.share),
            )
            for row in trend.rows
        ),
    )
    first, last = trend.rows[0].start.isoformat(), trend.rows[-1].start.isoformat()
    x_labels = [(0, first, "start")] + ([(1, last, "end")] if last != first else [])
    return _svg(
        "uncertain-chart",
        "Share of uncertain results over time",
        f"Per {trend.period}, the share of the classifications made that are uncertain.",
        height,
        format_html("{}{}", _axes(height, "Uncertain", x_labels), bars),
    )


SCORE_TICKS = [(0, "0%", "start"), (0.5, "50%", "middle"), (1, "100%", "end")]


def reliability_chart(bins: Sequence[ReliabilityBin]) -> SafeString:
    """Each bin a point at its mean confidence and its share right, joined by a line, over
    the diagonal a perfectly calibrated model would lie on."""
    plot_w = plot_h = RIGHT - LEFT  # square: both axes run from 0 to 1
    height = TOP + plot_h + BOTTOM

    def at(confidence: float, share: float) -> tuple[str, str]:
        return _n(LEFT + plot_w * confidence), _n(TOP + plot_h * (1 - share))

    points = [at(b.mean_confidence, b.share_right) for b in bins]
    marks = format_html_join(
        "",
        '<circle class="chart-point" cx="{}" cy="{}" r="5">'
        "<title>Confidence {}: right {} of {} ({}), mean confidence {}</title></circle>",
        (
            (x, y, b.label, b.right, b.judged, percent(b.share_right),
             percent(b.mean_confidence))
            for (x, y), b in zip(points, bins)
        ),
    )
    (x0, y0), (x1, y1) = at(0, 0), at(1, 1)
    body = format_html(
        '{}<line class="chart-diagonal" x1="{}" y1="{}" x2="{}" y2="{}">'
        "<title>Perfect calibration</title></line>"
        '<polyline class="chart-line" points="{}"></polyline>{}'
        '<text class="chart-text chart-axis-name" x="{}" y="{}" text-anchor="middle">'
        "Confidence (top score)</text>",
        _axes(height, "Share right", SCORE_TICKS),
        x0, y0, x1, y1, " ".join(f"{x},{y}" for x, y in points), marks,
        _n(LEFT + plot_w / 2), _n(height - 2),
    )
    return _svg(
        "reliability-chart",
        "Reliability diagram",
        "For each confidence bin, the share of reviewed results the model got right, against "
        "the diagonal of perfect calibration.",
        height,
        body,
    )
