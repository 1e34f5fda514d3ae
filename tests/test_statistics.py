"""The review statistics: on uploads, corrections and reviews with counts known in advance,
every number of the module and of the page's tables; one bar or point in each chart per
row of its table; the empty page; who may see it (reviewers and staff) and who is not
told it exists."""

from __future__ import annotations

import datetime
import re
from datetime import date

import pytest

from recognition import statistics
from recognition.corrections import correction_set
from recognition.models import (
    Classification,
    Correction,
    CorrectionStatus,
    Review,
    ReviewDecision,
    Upload,
)
from recognition.review import review_decide
from recognition.services import upload_classify
from tests.web_fixtures import as_upload

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_password_hashing")]

URL = "/review/statistics/"
ACCEPTED, REJECTED, PENDING = (
    CorrectionStatus.ACCEPTED, CorrectionStatus.REJECTED, CorrectionStatus.PENDING
)
UTC = datetime.timezone.utc


def day(n: int, hour: int = 12) -> datetime.datetime:
    """November n, 2026, at noon UTC by default."""
    return datetime.datetime(2026, 11, n, hour, tzinfo=UTC)


def uploaded(user, make_image, label: str, score: float, margin: float, when) -> Upload:
    """A real upload whose classification then says `label` at `score`, made `when`."""
    upload = upload_classify(user=user, file=as_upload(make_image(), f"{label}.jpg")).upload
    Classification.objects.filter(pk=upload.classification_id).update(
        top_label=label, top_score=score, margin=margin, created_at=when
    )
    return Upload.objects.select_related("classification").get(pk=upload.pk)


def corrected(upload: Upload, label: str, status: str) -> Correction:
    return Correction.objects.create(
        upload=upload, user=upload.user, classification=upload.classification, label=label,
        model_key=upload.classification.model_key, status=status, created_at=day(20),
    )


def reviewed(upload, reviewer, decision, proposed, label, correction=None, when=None) -> Review:
    return Review.objects.create(
        upload=upload, classification=upload.classification, correction=correction,
        proposed_label=proposed, decision=decision, label=label, reviewer=reviewer,
        created_at=when or day(21),
    )


@pytest.fixture
def uncertainty_defaults(settings):
    settings.RECOGNITION_UNCERTAIN_BELOW = 0.2
    settings.RECOGNITION_UNCERTAIN_MARGIN = 0.005


@pytest.fixture
def known(alice, bob, reviewer, make_image, uncertainty_defaults):
    """Ten uploads of three labels over three days (none on Nov 4), with corrections and
    reviews whose every statistic is counted by hand in the tests below.

    |     | label   | score | margin | day | correction        | latest review      | model   |
    | u1  | unicorn | 0.95  | 0.9    | 2   | horse accepted    | accepted: horse    | wrong   |
    | u2  | unicorn | 0.85  | 0.5    | 2   | pony accepted     | -                  |         |
    | u3  | unicorn | 0.55  | 0.3    | 3   | zebra rejected    | rejected (corr.)   | left out|
    | u4  | griffin | 0.10  | 0.1    | 2   | -                 | accepted: Griffin  | right   |
    | u5  | griffin | 0.12  | 0.002  | 2   | -                 | rejected, no corr. | wrong   |
    | u6  | griffin | 1.00  | 0.001  | 3   | -                 | edited: hippogriff | wrong   |
    | u7  | phoenix | 0.45  | 0.2    | 3   | firebird pending  | accepted: phoenix  | right   |
    | u8  | unicorn | 0.35  | 0.2    | 5   | donkey, withdrawn | rejected (corr.)   | left out|
    | u9  | phoenix | 0.65  | 0.4    | 5   | firebird accepted | accepted: firebird | wrong   |
    | u10 | unicorn | 0.92  | 0.8    | 5   | horse rejected    | edited: Unicorn    | right   |

    u7 was first rejected, then accepted; u8's correction was rejected, then withdrawn.
    """
    u = {
        1: uploaded(alice, make_image, "unicorn", 0.95, 0.9, day(2)),
        2: uploaded(alice, make_image, "unicorn", 0.85, 0.5, day(2)),
        3: uploaded(alice, make_image, "unicorn", 0.55, 0.3, day(3)),
        4: uploaded(alice, make_image, "griffin", 0.1, 0.1, day(2)),
        5: uploaded(bob, make_image, "griffin", 0.12, 0.002, day(2)),
        6: uploaded(bob, make_image, "griffin", 1.0, 0.001, day(3)),
        7: uploaded(alice, make_image, "phoenix", 0.45, 0.2, day(3)),
        8: uploaded(alice, make_image, "unicorn", 0.35, 0.2, day(5)),
        9: uploaded(bob, make_image, "phoenix", 0.65, 0.4, day(5)),
        10: uploaded(bob, make_image, "unicorn", 0.92, 0.8, day(5)),
    }
    r = reviewer
    reviewed(u[1], r, ReviewDecision.ACCEPTED, "horse", "horse", corrected(u[1], "horse", ACCEPTED))
    corrected(u[2], "pony", ACCEPTED)
    reviewed(u[3], r, ReviewDecision.REJECTED, "zebra", "", corrected(u[3], "zebra", REJECTED))
    reviewed(u[4], r, ReviewDecision.ACCEPTED, "Griffin", "Griffin")
    reviewed(u[5], r, ReviewDecision.REJECTED, "griffin", "")
    reviewed(u[6], r, ReviewDecision.EDITED, "griffin", "hippogriff")
    corrected(u[7], "firebird", PENDING)
    reviewed(u[7], r, ReviewDecision.REJECTED, "phoenix", "", when=day(21, hour=9))
    reviewed(u[7], r, ReviewDecision.ACCEPTED, "phoenix", "phoenix", when=day(21, hour=10))
    donkey = corrected(u[8], "donkey", REJECTED)
    reviewed(u[8], r, ReviewDecision.REJECTED, "donkey", "", donkey)
    donkey.delete()  # the owner withdrew it: the review stays, without its correction
    firebird = corrected(u[9], "firebird", ACCEPTED)
    reviewed(u[9], r, ReviewDecision.ACCEPTED, "firebird", "firebird", firebird)
    horse = corrected(u[10], "horse", REJECTED)
    reviewed(u[10], r, ReviewDecision.EDITED, "horse", "Unicorn", horse)
    return u


# --- The numbers ----------------------------------------------------------------------


def test_the_correction_rate_counts_pending_and_accepted_corrections_most_corrected_first(known):
    rates = statistics.correction_rates()

    assert [(r.label, r.uploads, r.corrections) for r in rates] == [
        ("unicorn", 5, 2),  # u1 and u2; u3 and u10 rejected, u8 withdrawn
        ("phoenix", 2, 2),  # fewer uploads: after unicorn, though its rate is higher
        ("griffin", 3, 0),
    ]
    assert [r.rate for r in rates] == [0.4, 1.0, 0.0]


def test_the_correction_rate_shows_only_the_most_corrected_labels(known):
    assert [r.label for r in statistics.correction_rates(limit=2)] == ["unicorn", "phoenix"]


def test_confusions_pair_the_models_label_with_the_correction_leaving_out_rejected_ones(known):
    assert statistics.confusions() == [
        statistics.Confusion("phoenix", "firebird", count=2, accepted=1),
        statistics.Confusion("unicorn", "horse", count=1, accepted=1),
        statistics.Confusion("unicorn", "pony", count=1, accepted=1),
    ]


def test_the_acceptance_rate_is_the_share_accepted_of_the_reviewed_corrections(known):
    acceptance = statistics.acceptance()

    assert (acceptance.accepted, acceptance.rejected, acceptance.pending) == (3, 2, 1)
    assert (acceptance.reviewed, acceptance.rate) == (5, 0.6)


def test_the_uncertain_share_is_counted_per_day_with_the_uncertainty_rule(known):
    trend = statistics.uncertain_over_time()

    assert trend.period == "day"
    assert [(r.start, r.classifications, r.uncertain) for r in trend.rows] == [
        (date(2026, 11, 2), 4, 2),  # u5 by its margin, u4 by its score
        (date(2026, 11, 3), 3, 1),  # u6, sure but by too small a margin
        (date(2026, 11, 5), 3, 0),
    ]
    assert [trend.offset(r) for r in trend.rows] == [0, 1, 3]


def test_the_uncertain_share_follows_the_thresholds_in_force(known, settings):
    settings.RECOGNITION_UNCERTAIN_MARGIN = 0

    rows = statistics.uncertain_over_time().rows

    assert [r.uncertain for r in rows] == [2, 0, 0]


@pytest.mark.parametrize(
    ("last", "period", "starts"),
    [
        (date(2026, 12, 31), "day", None),  # 59 days after Nov 2
        (date(2027, 1, 2), "week", [date(2026, 11, 2), date(2026, 12, 28)]),
        (date(2028, 11, 3), "month", [date(2026, 11, 1), date(2028, 11, 1)]),
    ],
)
def test_a_long_span_is_counted_per_week_or_month(known, last, period, starts):
    noon = datetime.datetime.combine(last, datetime.time(12), tzinfo=UTC)
    Classification.objects.filter(created_at__gte=day(3)).update(created_at=noon)

    trend = statistics.uncertain_over_time()

    assert trend.period == period
    assert sum(r.classifications for r in trend.rows) == 10
    if starts:  # a week starts on Monday (Nov 2, 2026 is one), a month on the 1st
        assert [r.start for r in trend.rows] == starts


def test_the_reliability_diagram_judges_each_result_by_its_latest_review(known):
    bins = statistics.reliability()

    assert [(b.index, b.judged, b.right) for b in bins] == [
        (1, 2, 1),  # u4 right ("Griffin" is "griffin"), u5 rejected as the model said it
        (4, 1, 1),  # u7: the later review accepted what the earlier one rejected
        (6, 1, 0),  # u9
        (9, 3, 1),  # u1 and u6 wrong, u10 right; a score of 1.0 in the last bin
    ]
    assert [b.share_right for b in bins] == [0.5, 1.0, 0.0, pytest.approx(1 / 3)]
    means = [0.11, 0.45, 0.65, (0.95 + 1.0 + 0.92) / 3]
    assert [b.mean_confidence for b in bins] == pytest.approx(means)
    assert [(b.low, b.high, b.label) for b in bins][0] == (0.1, 0.2, "10–20%")


def test_a_review_tied_in_time_is_followed_by_the_later_written_one(known, reviewer):
    reviewed(known[9], reviewer, ReviewDecision.EDITED, "firebird", "phoenix", when=day(21))

    bins = {b.index: (b.judged, b.right) for b in statistics.reliability()}

    assert bins[6] == (1, 1)


def test_decisions_taken_in_the_review_queue_are_counted_as_the_definitions_say(
    alice, reviewer, make_image, uncertainty_defaults
):
    sure = uploaded(alice, make_image, "unicorn", 0.95, 0.9, day(2))
    correction_set(user=alice, upload_id=sure.pk, label="a horse of my own")
    review_decide(reviewer=reviewer, upload_id=sure.pk, decision=ReviewDecision.ACCEPTED)
    unsure = uploaded(alice, make_image, "griffin", 0.15, 0.1, day(2))
    review_decide(reviewer=reviewer, upload_id=unsure.pk, decision=ReviewDecision.ACCEPTED)
    relabelled = uploaded(alice, make_image, "phoenix", 0.18, 0.1, day(2))
    review_decide(
        reviewer=reviewer, upload_id=relabelled.pk, decision=ReviewDecision.EDITED, label="firebird"
    )
    # The owner was wrong and the reviewer says so by relabelling to the model's answer.
    right_after_all = uploaded(alice, make_image, "hydra", 0.9, 0.9, day(2))
    correction_set(user=alice, upload_id=right_after_all.pk, label="a snake")
    review_decide(
        reviewer=reviewer, upload_id=right_after_all.pk, decision=ReviewDecision.EDITED, label="HYDRA"
    )

    assert [(b.index, b.judged, b.right) for b in statistics.reliability()] == [(1, 2, 1), (9, 2, 1)]
    assert (statistics.acceptance().accepted, statistics.acceptance().rate) == (3, 1.0)
    assert statistics.confusions() == [
        statistics.Confusion("phoenix", "firebird", count=1, accepted=1),
        statistics.Confusion("unicorn", "a horse of my own", count=1, accepted=1),
    ]


# --- The page -------------------------------------------------------------------------


def section(html: str, section_id: str) -> str:
    [match] = re.findall(rf'<section[^>]*id="{section_id}".*?</section>', html, flags=re.S)
    return match


def table_rows(html: str, section_id: str) -> list[list[str]]:
    """The body rows of a section's table, each cell's text."""
    body = re.search(r"<tbody>(.*?)</tbody>", section(html, section_id), flags=re.S).group(1)
    cells = r"<t[hd][^>]*>(.*?)</t[hd]>"
    return [
        [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(cells, row, flags=re.S)]
        for row in re.findall(r"<tr>(.*?)</tr>", body, flags=re.S)
    ]


def marks(html: str, section_id: str, kind: str) -> int:
    return len(re.findall(rf'<{kind} class="chart-(?:bar|point)"', section(html, section_id)))


def test_the_page_shows_every_number_in_its_tables(known, reviewer_client):
    html = reviewer_client.get(URL).content.decode()

    assert table_rows(html, "correction-rates") == [
        ["unicorn", "5", "2", "40.0%"],
        ["phoenix", "2", "2", "100.0%"],
        ["griffin", "3", "0", "0.0%"],
    ]
    assert table_rows(html, "confusions") == [
        ["phoenix", "firebird", "2", "1"],
        ["unicorn", "horse", "1", "1"],
        ["unicorn", "pony", "1", "1"],
    ]
    assert table_rows(html, "acceptance") == [
        ["Accepted", "3"],
        ["Rejected", "2"],
        ["Reviewed", "5"],
        ["Pending", "1"],
        ["Acceptance rate", "60.0%"],
    ]
    assert table_rows(html, "uncertain") == [
        ["2026-11-02", "4", "2", "50.0%"],
        ["2026-11-03", "3", "1", "33.3%"],
        ["2026-11-05", "3", "0", "0.0%"],
    ]
    assert table_rows(html, "reliability") == [
        ["10–20%", "2", "1", "50.0%", "11.0%"],
        ["40–50%", "1", "1", "100.0%", "45.0%"],
        ["60–70%", "1", "0", "0.0%", "65.0%"],
        ["90–100%", "3", "1", "33.3%", "95.7%"],
    ]


def test_each_chart_has_one_bar_or_point_per_row_of_its_table(known, reviewer_client):
    html = reviewer_client.get(URL).content.decode()

    for section_id, kind in [
        ("correction-rates", "rect"),
        ("confusions", "rect"),
        ("uncertain", "rect"),
        ("reliability", "circle"),
    ]:
        assert marks(html, section_id, kind) == len(table_rows(html, section_id)), section_id
        chart = section(html, section_id)
        assert '<svg class="chart" viewBox="0 0 360 ' in chart and 'width="100%"' in chart
        assert re.search(r'role="img" aria-labelledby="[\w-]+-title [\w-]+-desc"', chart)
    assert 'class="chart-diagonal"' in section(html, "reliability")


def test_the_bars_are_as_long_as_the_rates(known, reviewer_client):
    html = reviewer_client.get(URL).content.decode()

    bar = r'<rect class="chart-bar" x="8" y="[\d.]+" width="([\d.]+)"'
    widths = re.findall(bar, section(html, "correction-rates"))

    assert widths == ["137.6", "344", "0"]  # 40 %, 100 % and 0 % of 344 units


def test_labels_are_escaped_in_the_charts_and_tables(known, reviewer_client):
    Classification.objects.filter(top_label="phoenix").update(top_label="<b>phoenix</b>")

    html = reviewer_client.get(URL).content.decode()

    assert "<b>phoenix" not in html
    assert "&lt;b&gt;phoenix&lt;/b&gt; → firebird" in section(html, "confusions")


def test_with_nothing_to_count_each_chart_says_so(reviewer_client):
    response = reviewer_client.get(URL)
    html = response.content.decode()

    assert response.status_code == 200
    assert "<svg" not in html
    assert "no picture has been uploaded" in section(html, "correction-rates")
    assert "No corrections yet." in section(html, "confusions")
    assert "No correction has been reviewed yet." in section(html, "acceptance")
    assert [value for _, value in table_rows(html, "acceptance")] == ["0", "0", "0", "0", "—"]
    assert "No classifications yet." in section(html, "uncertain")
    assert "Nothing reviewed yet." in section(html, "reliability")
    assert statistics.reliability() == [] and statistics.uncertain_over_time().rows == []


# --- Who may see it -------------------------------------------------------------------

NAV_LINK = f'<a href="{URL}"'


def test_a_reviewer_sees_the_page_and_its_link_in_the_navigation(reviewer_client):
    response = reviewer_client.get(URL)

    assert response.status_code == 200
    assert f'{NAV_LINK} aria-current="page">Statistics</a>' in response.content.decode()


def test_staff_without_the_permission_see_it(client, django_user_model):
    staff = django_user_model.objects.create_user(username="dave", password="x", is_staff=True)
    client.force_login(staff)

    assert client.get(URL).status_code == 200


def test_a_user_who_is_no_reviewer_is_not_told_it_exists(alice_client, known):
    response = alice_client.get(URL)

    assert response.status_code == 404
    assert "unicorn" not in response.content.decode()
    assert NAV_LINK not in alice_client.get("/history/").content.decode()


def test_an_anonymous_visitor_is_sent_to_log_in(client):
    response = client.get(URL)

    assert response.status_code == 302
    assert response["Location"] == f"/accounts/login/?next={URL}"


def test_the_page_only_answers_get(reviewer_client):
    assert reviewer_client.post(URL).status_code == 405


def test_staff_find_it_from_the_admin_index(superuser_client):
    response = superuser_client.get("/admin/")

    assert response.status_code == 200
    assert NAV_LINK in response.content.decode()
    assert 'id="content-main"' in response.content.decode()  # the admin's own index, kept
