"""History filters: label, date range and minimum confidence, kept across pages, with
label suggestions from the active model's categories."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest
from django.core.cache import cache

from recognition.configured_classifier import get_classifier
from recognition.models import Classification, Upload
from recognition.selectors import upload_list_for_user
from recognition.services import upload_classify
from tests.web_fixtures import as_upload

pytestmark = pytest.mark.django_db


def uploaded_on(user, make_image, day: date, name: str) -> Upload:
    upload = upload_classify(user=user, file=as_upload(make_image(), name)).upload
    moment = datetime(day.year, day.month, day.day, 12, 0, tzinfo=timezone.utc)
    Upload.objects.filter(pk=upload.pk).update(created_at=moment, last_uploaded_at=moment)
    return upload


def with_top_score(upload: Upload, score: float) -> Upload:
    Classification.objects.filter(pk=upload.classification_id).update(top_score=score)
    return upload


def suggestions(html: str) -> str:
    """The label datalist, without the page's other options (the certainty select)."""
    return html.split('<datalist id="label-suggestions">', 1)[1].split("</datalist>", 1)[0]


def names(uploads) -> list[str]:
    return [upload.original_filename for upload in uploads]


def test_the_date_range_includes_both_of_its_days(alice, make_image):
    for day in (1, 2, 3, 4):
        uploaded_on(alice, make_image, date(2026, 3, day), f"{day}.jpg")

    found = upload_list_for_user(
        user=alice, uploaded_from=date(2026, 3, 2), uploaded_until=date(2026, 3, 3)
    )

    assert names(found) == ["3.jpg", "2.jpg"]
    assert names(upload_list_for_user(user=alice, uploaded_from=date(2026, 3, 4))) == ["4.jpg"]
    assert names(upload_list_for_user(user=alice, uploaded_until=date(2026, 3, 1))) == ["1.jpg"]


def test_the_minimum_confidence_applies_to_the_top_prediction(alice, make_image):
    for name, score in [("sure.jpg", 0.9), ("edge.jpg", 0.5), ("unsure.jpg", 0.2)]:
        with_top_score(upload_classify(user=alice, file=as_upload(make_image(), name)).upload, score)

    assert set(names(upload_list_for_user(user=alice, min_score=0.5))) == {"sure.jpg", "edge.jpg"}
    assert names(upload_list_for_user(user=alice, min_score=0.95)) == []


def test_filters_never_reach_another_users_uploads(alice, bob, make_image):
    day = date(2026, 5, 1)
    uploaded_on(bob, make_image, day, "bobs.jpg")
    uploaded_on(alice, make_image, day, "alices.jpg")

    found = upload_list_for_user(user=alice, uploaded_from=day, uploaded_until=day, min_score=0)

    assert names(found) == ["alices.jpg"]


def test_the_history_page_filters_by_dates_and_confidence_and_its_page_links_keep_them(
    alice, alice_client, make_image, monkeypatch
):
    from recognition.views import pages

    monkeypatch.setattr(pages, "HISTORY_PAGE_SIZE", 2)
    for n in range(4):
        with_top_score(uploaded_on(alice, make_image, date(2026, 6, 10 + n), f"june{n}.jpg"), 0.8)
    with_top_score(uploaded_on(alice, make_image, date(2026, 6, 11), "unsure.jpg"), 0.1)
    uploaded_on(alice, make_image, date(2026, 7, 1), "july.jpg")
    filters = {"uploaded_from": "2026-06-01", "uploaded_until": "2026-06-30", "min_confidence": "50"}

    first = alice_client.get("/history/", filters)
    second = alice_client.get("/history/", {**filters, "page": 2})

    html = first.content.decode()
    assert names(first.context["page"].object_list) == ["june3.jpg", "june2.jpg"]
    assert names(second.context["page"].object_list) == ["june1.jpg", "june0.jpg"]
    assert "4 uploads within the chosen dates and confidence." in html
    assert (
        'rel="next" href="?uploaded_from=2026-06-01&amp;uploaded_until=2026-06-30'
        '&amp;min_confidence=50&amp;page=2"' in html
    )
    assert 'value="2026-06-01"' in html and 'value="50"' in html
    assert 'rel="prev" href="?uploaded_from=2026-06-01' in second.content.decode()


def test_a_filter_that_matches_nothing_offers_the_way_back(alice, alice_client, make_image):
    upload_classify(user=alice, file=as_upload(make_image()))

    html = alice_client.get("/history/", {"uploaded_from": "2999-01-01"}).content.decode()

    assert "None of your uploads matches the chosen dates and confidence." in html
    assert "Show all your uploads" in html


def test_an_invalid_filter_is_explained_and_the_others_still_apply(alice, alice_client, make_image):
    uploaded_on(alice, make_image, date(2026, 1, 5), "old.jpg")
    uploaded_on(alice, make_image, date(2026, 2, 5), "new.jpg")

    response = alice_client.get("/history/", {"uploaded_from": "2026-02-01", "min_confidence": "150"})

    assert response.status_code == 200
    assert names(response.context["page"].object_list) == ["new.jpg"]
    assert "Ensure this value is less than or equal to 100." in response.content.decode()


def test_an_end_date_before_the_start_date_is_pointed_out(alice, alice_client, make_image):
    uploaded_on(alice, make_image, date(2026, 1, 5), "photo.jpg")

    backwards = {"uploaded_from": "2026-02-01", "uploaded_until": "2026-01-01"}

    response = alice_client.get("/history/", backwards)

    assert "The end date is before the start date." in response.content.decode()
    assert names(response.context["page"].object_list) == []  # the valid start date applies


def test_history_suggests_every_category_of_the_active_model_rendered_once_per_version(
    alice_client, monkeypatch
):
    from recognition.views import pages

    cache.clear()
    categories = get_classifier().manifest().categories
    calls = []
    real = pages.category_names
    monkeypatch.setattr(pages, "category_names", lambda: calls.append(1) or real())

    first = alice_client.get("/history/").content.decode()
    second = alice_client.get("/history/").content.decode()

    assert '<input type="search" name="q"' in first and 'list="label-suggestions"' in first
    assert suggestions(first).count("<option value=") == len(categories) == 1000
    assert f'<option value="{categories[0]}">' in first
    assert suggestions(second).count("<option value=") == len(categories)
    assert len(calls) == 1
    assert "<datalist" not in alice_client.get("/").content.decode()


def test_history_works_without_a_model_and_then_suggests_nothing(alice_client, no_model):
    response = alice_client.get("/history/")

    assert response.status_code == 200
    assert "<datalist" not in response.content.decode()
