"""What the corrections and reviews say about the model, for reviewers and staff: how often
each of its answers is corrected, what it is confused with, how many corrections reviewers
accept, how many results are uncertain over time, and whether its confidence matches how
often it is right. Each number is one aggregate query; the statistics page
(views/statistics.py) and its charts (charts.py) only show them.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.db.models import (
    Avg, Case, Count, DateField, Exists, F, Max, Min, OuterRef, Q, Value, When,
)
from django.db.models.functions import Lower, Trunc
from django.utils import timezone

from .models import Classification, Correction, CorrectionStatus, Review, ReviewDecision, Upload
from .review import is_reviewer
from .uncertainty import uncertain_q

# Rows the label charts show: the most corrected labels and the most frequent confusions.
TOP_ROWS = 20
# A rejected correction says the owner was wrong, not the model: it is no correction.
COUNTED_CORRECTIONS = (CorrectionStatus.PENDING, CorrectionStatus.ACCEPTED)
# Uncertain share over time: per day while the classifications span at most this many
# days, per week (from Monday) up to two years, per month beyond.
PERIODS = ((60, "day"), (730, "week"), (None, "month"))
RELIABILITY_BINS = 10


def may_see_statistics(user: AbstractBaseUser | AnonymousUser) -> bool:
    """Reviewers (review.py), and staff, who look after the model, even if they review
    nothing themselves."""
    return is_reviewer(user) or (user.is_active and user.is_staff)


@dataclass(frozen=True)
class LabelCorrections:
    label: str
    uploads: int
    corrections: int

    @property
    def rate(self) -> float:
        return self.corrections / self.uploads


def correction_rates(limit: int = TOP_ROWS) -> list[LabelCorrections]:
    """Per top label of the uploads' current classifications (what their owners are
    shown): how many uploads have it and how many of those carry a correction that is
    pending or accepted. Most corrected first (then most uploaded, then by name)."""
    rows = (
        Upload.objects.values(label=F("classification__top_label"))
        .annotate(
            uploads=Count("pk"),
            corrections=Count("correction", filter=Q(correction__status__in=COUNTED_CORRECTIONS)),
        )
        .order_by("-corrections", "-uploads", "label")[:limit]
    )
    return [LabelCorrections(**row) for row in rows]


@dataclass(frozen=True)
class Confusion:
    predicted: str
    corrected: str
    count: int
    accepted: int


def confusions(limit: int = TOP_ROWS) -> list[Confusion]:
    """(The corrected result's top label → the correction's label), counted over the
    corrections that are pending or accepted, with how many of them were accepted. Most
    frequent first. A correction a reviewer relabelled to the model's own answer (review.py
    allows it) confuses nothing, so it is left out."""
    rows = (
        Correction.objects.filter(status__in=COUNTED_CORRECTIONS)
        .alias(folded=Lower("label"), answer=Lower("classification__top_label"))
        .exclude(folded=F("answer"))
        .values(predicted=F("classification__top_label"), corrected=F("label"))
        .annotate(
            count=Count("pk"),
            accepted=Count("pk", filter=Q(status=CorrectionStatus.ACCEPTED)),
        )
        .order_by("-count", "-accepted", "predicted", "corrected")[:limit]
    )
    return [Confusion(**row) for row in rows]


@dataclass(frozen=True)
class Acceptance:
    accepted: int
    rejected: int
    pending: int

    @property
    def reviewed(self) -> int:
        return self.accepted + self.rejected

    @property
    def rate(self) -> float | None:
        """Of the corrections reviewed (accepted or rejected), the share accepted."""
        return self.accepted / self.reviewed if self.reviewed else None


def acceptance() -> Acceptance:
    statuses = (CorrectionStatus.ACCEPTED, CorrectionStatus.REJECTED, CorrectionStatus.PENDING)
    counts = Correction.objects.aggregate(
        **{status: Count("pk", filter=Q(status=status)) for status in statuses}
    )
    return Acceptance(**counts)


@dataclass(frozen=True)
class UncertainPeriod:
    start: datetime.date
    classifications: int
    uncertain: int

    @property
    def share(self) -> float:
        return self.uncertain / self.classifications


@dataclass(frozen=True)
class UncertainTrend:
    period: str  # "day", "week" or "month": what each row covers, from `start`
    rows: list[UncertainPeriod]

    def offset(self, row: UncertainPeriod) -> int:
        """How many periods after the first one `row` is, so a chart leaves gaps for the
        periods in which nothing was classified (they have no row)."""
        first = self.rows[0].start
        if self.period == "month":
            return (row.start.year - first.year) * 12 + row.start.month - first.month
        return (row.start - first).days // (7 if self.period == "week" else 1)


def uncertain_over_time() -> UncertainTrend:
    """Classifications made per period of their created_at (in the server's time zone)
    and how many of them are uncertain by the rule in force (uncertainty.py)."""
    span = Classification.objects.aggregate(first=Min("created_at"), last=Max("created_at"))
    if span["first"] is None:
        return UncertainTrend("day", [])
    days = (timezone.localdate(span["last"]) - timezone.localdate(span["first"])).days
    period = next(name for longest, name in PERIODS if longest is None or days <= longest)
    rows = (
        Classification.objects.annotate(start=Trunc("created_at", period, output_field=DateField()))
        .values("start")
        .annotate(classifications=Count("pk"), uncertain=Count("pk", filter=uncertain_q()))
        .order_by("start")
    )
    return UncertainTrend(period, [UncertainPeriod(**row) for row in rows])


@dataclass(frozen=True)
class ReliabilityBin:
    index: int  # covers top scores from index/10 up to (index+1)/10; 1.0 is in the last
    judged: int
    right: int
    mean_confidence: float

    @property
    def low(self) -> float:
        return self.index / RELIABILITY_BINS

    @property
    def high(self) -> float:
        return (self.index + 1) / RELIABILITY_BINS

    @property
    def label(self) -> str:
        """"0–10%" … "90–100%"."""
        step = 100 // RELIABILITY_BINS
        return f"{self.index * step}–{(self.index + 1) * step}%"

    @property
    def share_right(self) -> float:
        return self.right / self.judged


def reliability() -> list[ReliabilityBin]:
    """Per confidence bin of the top score, among the results reviewers judged, the share
    where the model was right: the bins with at least one such result, lowest first.

    Only each classification's latest review counts. The model was right when the label
    that review settled on is its top label (whatever the case), and wrong when the label
    is another one, or when the review rejected the model's own answer (an uncertain
    result reviewed without a correction). A rejected correction says only that the
    owner's label is wrong, so it tells nothing about the model and is left out; so is a
    review whose correction was since withdrawn and whose proposal was not the model's.
    """
    later = Review.objects.filter(classification=OuterRef("classification")).filter(
        Q(created_at__gt=OuterRef("created_at"))
        | Q(created_at=OuterRef("created_at"), pk__gt=OuterRef("pk"))
    )
    settled = Q(decision__in=(ReviewDecision.ACCEPTED, ReviewDecision.EDITED))
    right = settled & Q(settled_label=F("answer"))
    wrong = (settled & ~Q(settled_label=F("answer"))) | Q(
        decision=ReviewDecision.REJECTED, correction__isnull=True, proposed=F("answer")
    )
    score = "classification__top_score"
    rows = (
        Review.objects.filter(~Exists(later))
        .alias(
            settled_label=Lower("label"),
            proposed=Lower("proposed_label"),
            answer=Lower("classification__top_label"),
        )
        .filter(right | wrong)
        .annotate(
            index=Case(
                *(
                    When(**{f"{score}__lt": (i + 1) / RELIABILITY_BINS}, then=Value(i))
                    for i in range(RELIABILITY_BINS - 1)
                ),
                default=Value(RELIABILITY_BINS - 1),
            )
        )
        .values("index")
        .annotate(judged=Count("pk"), right=Count("pk", filter=right), mean_confidence=Avg(score))
        .order_by("index")
    )
    return [ReliabilityBin(**row) for row in rows]


@dataclass(frozen=True)
class ReviewStatistics:
    correction_rates: list[LabelCorrections]
    confusions: list[Confusion]
    acceptance: Acceptance
    uncertain: UncertainTrend
    reliability: list[ReliabilityBin]


def review_statistics() -> ReviewStatistics:
    return ReviewStatistics(
        correction_rates=correction_rates(),
        confusions=confusions(),
        acceptance=acceptance(),
        uncertain=uncertain_over_time(),
        reliability=reliability(),
    )
