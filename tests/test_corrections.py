"""Corrections by the owner: through the API and the detail page a user says what their
picture really shows, as one of the model's categories or in their own words; they can
replace it and withdraw it; bad labels are refused with a reason and change nothing;
history search finds the corrected label; nobody else can see or touch it."""

from __future__ import annotations

import csv
import io
import json

import pytest

from recognition.configured_classifier import get_classifier
from recognition.models import Correction, CorrectionStatus, Upload
from recognition.services import upload_classify
from tests.web_fixtures import as_upload

pytestmark = pytest.mark.django_db

API = "/api/v1/classifications/"


def correction_url(upload: Upload) -> str:
    return f"{API}{upload.pk}/correction/"


def page_url(upload: Upload) -> str:
    return f"/uploads/{upload.pk}/correction/"


@pytest.fixture
def categories() -> list[str]:
    return list(get_classifier().manifest().categories)


@pytest.fixture
def alices(alice, make_image) -> Upload:
    return upload_classify(user=alice, file=as_upload(make_image(seed=7), "beach.jpg")).upload


def another_category(upload: Upload, categories: list[str]) -> tuple[int, str]:
    """A category the model did not answer for this upload."""
    return next(
        (index, name)
        for index, name in enumerate(categories)
        if name != upload.classification.top_label and categories.index(name) == index
    )


# --- API ------------------------------------------------------------------------------


def test_putting_a_category_name_records_it_with_its_index_pending_review(
    alice_api, alices, categories
):
    index, name = another_category(alices, categories)

    response = alice_api.put(correction_url(alices), {"label": name.upper()}, format="json")

    assert response.status_code == 200
    body = response.json()
    assert (body["label"], body["index"], body["status"]) == (name, index, "pending")
    correction = Correction.objects.get(upload=alices)
    assert (correction.user, correction.classification) == (alices.user, alices.classification)
    assert correction.model_key == get_classifier().manifest().key
    shown = alice_api.get(f"{API}{alices.pk}/").json()["correction"]
    assert shown == body


def test_a_label_of_ones_own_words_is_cleaned_and_has_no_index(alice_api, alices):
    # Full-width letters (NFKC), doubled and surrounding white space, a pasted tab.
    response = alice_api.put(
        correction_url(alices), {"label": "  ｍｙ\tgrandmother's   cat  "}, format="json"
    )

    assert response.status_code == 200
    assert (response.json()["label"], response.json()["index"]) == ("my grandmother's cat", None)


def test_putting_again_replaces_the_correction_and_sends_it_back_to_review(
    alice_api, alices, superuser
):
    alice_api.put(correction_url(alices), {"label": "first thought"}, format="json")
    Correction.objects.filter(upload=alices).update(
        status=CorrectionStatus.ACCEPTED, reviewed_by=superuser
    )

    response = alice_api.put(correction_url(alices), {"label": "second thought"}, format="json")

    assert response.json()["status"] == "pending"
    [correction] = Correction.objects.filter(upload=alices)
    assert (correction.label, correction.reviewed_by) == ("second thought", None)


def test_delete_withdraws_the_correction(alice_api, alices):
    alice_api.put(correction_url(alices), {"label": "a heron"}, format="json")

    assert alice_api.delete(correction_url(alices)).status_code == 204

    assert not Correction.objects.filter(upload=alices).exists()
    assert alice_api.get(f"{API}{alices.pk}/").json()["correction"] is None
    # Withdrawing nothing is not an error either.
    assert alice_api.delete(correction_url(alices)).status_code == 204


@pytest.mark.parametrize(
    "label, code",
    [
        ("", "label_empty"),
        (" \t\n ", "label_empty"),
        ("x" * 101, "label_too_long"),
        ("ｘ" * 101, "label_too_long"),  # counted after normalisation
        ("cat\x1b[31m", "label_control_characters"),
        ("bell\x07", "label_control_characters"),
        ("\u202etac", "label_control_characters"),  # a right-to-left override
    ],
)
def test_a_bad_label_is_refused_with_its_reason_and_changes_nothing(alice_api, alices, label, code):
    alice_api.put(correction_url(alices), {"label": "what it was"}, format="json")

    response = alice_api.put(correction_url(alices), {"label": label}, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert Correction.objects.get(upload=alices).label == "what it was"


def test_a_label_of_exactly_one_hundred_characters_is_accepted(alice_api, alices):
    response = alice_api.put(correction_url(alices), {"label": "y" * 100}, format="json")

    assert response.status_code == 200


@pytest.mark.parametrize("body", [{}, {"label": None}, {"label": ["cat"]}, {"label": "nul\x00"}])
def test_a_malformed_body_is_a_400_with_the_error_body(alice_api, alices, body):
    response = alice_api.put(correction_url(alices), body, format="json")

    assert response.status_code == 400
    assert set(response.json()["error"]) >= {"code", "message"}
    assert not Correction.objects.exists()


def test_the_models_own_answer_is_not_a_correction(alice_api, alices):
    response = alice_api.put(
        correction_url(alices), {"label": alices.classification.top_label.title()}, format="json"
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "same_as_prediction"
    assert not Correction.objects.exists()


def test_another_users_classification_is_a_404_for_put_and_delete(bob_api, alice_api, alices):
    alice_api.put(correction_url(alices), {"label": "mine"}, format="json")

    put = bob_api.put(correction_url(alices), {"label": "his"}, format="json")
    bad_label = bob_api.put(correction_url(alices), {"label": ""}, format="json")
    delete = bob_api.delete(correction_url(alices))

    assert (put.status_code, bad_label.status_code, delete.status_code) == (404, 404, 404)
    assert "mine" not in put.content.decode() + delete.content.decode()
    assert Correction.objects.get(upload=alices).label == "mine"


def test_history_search_finds_the_corrected_label(alice_api, alice_client, alices, alice, make_image):
    other = upload_classify(user=alice, file=as_upload(make_image(seed=8), "other.jpg")).upload
    alice_api.put(correction_url(alices), {"label": "Aunt Mabel's terrier"}, format="json")

    api = alice_api.get(API, {"label": "mabel"}).json()["results"]
    page = alice_client.get("/history/", {"q": "MABEL"})

    assert [row["id"] for row in api] == [alices.pk]
    html = page.content.decode()
    assert "beach.jpg" in html and "other.jpg" not in html
    # The card says why it matched.
    assert "Corrected: <span class=\"correction-label\">Aunt Mabel&#x27;s terrier</span> (pending)" in html
    assert other.pk  # still there, just not matching


def test_the_export_carries_the_correction_and_guards_it_against_formulas(alice_api, alices):
    alice_api.put(correction_url(alices), {"label": "=1+1 (a sum)"}, format="json")

    csv_text = b"".join(alice_api.get(f"{API}export/").streaming_content).decode()
    jsonl = b"".join(alice_api.get(f"{API}export/", {"format": "jsonl"}).streaming_content)
    [row] = list(csv.DictReader(io.StringIO(csv_text)))

    assert (row["correction_label"], row["correction_status"]) == ("'=1+1 (a sum)", "pending")
    record = json.loads(jsonl)
    assert record["correction"]["label"] == "=1+1 (a sum)"
    assert record["correction"]["index"] is None


# --- The detail page ------------------------------------------------------------------


def test_the_detail_page_offers_the_categories_as_type_ahead_without_javascript(
    alice_client, alices, categories
):
    html = alice_client.get(f"/uploads/{alices.pk}/").content.decode()

    assert 'list="label-suggestions"' in html
    assert '<datalist id="label-suggestions">' in html
    assert html.count("<option value=") >= len(set(categories))
    assert f'action="{page_url(alices)}"' in html


def test_the_owner_corrects_on_the_detail_page_and_sees_it_pending(alice_client, alices, categories):
    index, name = another_category(alices, categories)

    response = alice_client.post(page_url(alices), {"label": name, "save": ""}, follow=True)

    assert response.redirect_chain[-1][0] == f"/uploads/{alices.pk}/"
    html = response.content.decode()
    assert f'class="correction-label">{name}<' in html
    assert 'data-status="pending"' in html
    assert Correction.objects.get(upload=alices).index == index


def test_the_page_refuses_a_label_that_is_no_category_unless_asked_for_own_words(
    alice_client, alices
):
    refused = alice_client.post(page_url(alices), {"label": "golden retreiver"})

    assert refused.status_code == 400
    html = refused.content.decode()
    assert "is not one of the model&#x27;s categories" in html
    assert 'value="golden retreiver"' in html  # the owner's text is kept to fix
    assert not Correction.objects.exists()

    accepted = alice_client.post(
        page_url(alices), {"label": "golden retreiver", "none_of_these": "on"}
    )

    assert accepted.status_code == 302
    correction = Correction.objects.get(upload=alices)
    assert (correction.label, correction.index) == ("golden retreiver", None)


def test_the_page_shows_why_an_empty_label_is_refused(alice_client, alices):
    response = alice_client.post(page_url(alices), {"label": "   ", "none_of_these": "on"})

    assert response.status_code == 400
    assert "the label is empty" in response.content.decode()


def test_the_owner_withdraws_the_correction_on_the_page(alice_client, alice_api, alices):
    alice_api.put(correction_url(alices), {"label": "a heron"}, format="json")

    response = alice_client.post(page_url(alices), {"remove": ""}, follow=True)

    assert "Your correction is withdrawn." in response.content.decode()
    assert not Correction.objects.exists()


def test_another_user_cannot_correct_or_withdraw_on_the_page(bob_client, alice_api, alices):
    alice_api.put(correction_url(alices), {"label": "mine"}, format="json")

    saved = bob_client.post(page_url(alices), {"label": "his", "none_of_these": "on"})
    removed = bob_client.post(page_url(alices), {"remove": ""})

    assert (saved.status_code, removed.status_code) == (404, 404)
    assert Correction.objects.get(upload=alices).label == "mine"
