"""The statistics page for reviewers and staff: the numbers are in statistics.py, the
charts drawn in charts.py."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from .. import charts
from ..statistics import TOP_ROWS, may_see_statistics, review_statistics


@login_required
@require_GET
def review_statistics_page(request: HttpRequest) -> HttpResponse:
    # Like another user's upload: whoever may not see it is not told it exists.
    if not may_see_statistics(request.user):
        raise Http404
    stats = review_statistics()
    context = {
        "stats": stats,
        "top_rows": TOP_ROWS,
        "uncertain_below": settings.RECOGNITION_UNCERTAIN_BELOW,
        "uncertain_margin": settings.RECOGNITION_UNCERTAIN_MARGIN,
        # A chart only where there is something to draw; the template says so otherwise.
        "correction_rate_chart": (
            stats.correction_rates and charts.correction_rate_chart(stats.correction_rates)
        ),
        "confusion_chart": stats.confusions and charts.confusion_chart(stats.confusions),
        "uncertain_chart": stats.uncertain.rows and charts.uncertain_chart(stats.uncertain),
        "reliability_chart": stats.reliability and charts.reliability_chart(stats.reliability),
    }
    return render(request, "recognition/statistics.html", context)
