"""The review queue: only reviewers (the Reviewers group, or superusers) see it and the
pictures it shows; it holds pending corrections and unreviewed uncertain results, least
confident first; accepting, rejecting and relabelling are recorded with who and when,
the owner sees the outcome, and a decided item leaves the queue for everyone."""

from __future__ import annotations

import zlib

import pytest
from django.test import Client

from recognition.configured_classifier import get_classifier
from recognition.corrections import correction_set
from recognition.models import Classification, Correction, Review, Upload
from recognition.services import upload_classify
from tests.web_fixtures import as_upload

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_password_hashing")]


@pytest.fixture(autouse=True)
def thresholds(settings):
    settings.RECOGNITION_UNCERTAIN_BELOW = 0.2
    settings.RECOGNITION_UNCERTAIN_MARGIN = 0.005



def upload(user, make_image, name: str, *, top: float, label: str | None = None) -> Upload:
    """An upload whose result has this top score (0.05 ahead of the second)."""
    data = make_image(seed=zlib.crc32(name.encode()) % 10_000)
    made = upload_classify(user=user, file=as_upload(data, name)).upload
    values = {"top_score": top, "margin": 0.05}
    if label:
        values["top_label"] = label
    Classification.objects.filter(pk=made.classification_id).update(**values)
    return Upload.objects.select_related("classification", "stored_image").get(pk=made.pk)


def a_category_other_than(label: str) -> str:
    return next(name for name in get_classifier().manifest().categories if name != label)


@pytest.fixture
def pictures(alice, bob, make_image):
    """Alice's confident picture she corrected, her unsure one, Bob's confident one
    (nothing to review) and Bob's very unsure one."""
    corrected = upload(alice, make_image, "corrected.jpg", top=0.6)
    correction_set(user=alice, upload_id=corrected.pk, label="my neighbour's cat")
    unsure = upload(alice, make_image, "unsure.jpg", top=0.15)
    confident = upload(bob, make_image, "confident.jpg", top=0.9)
    very_unsure = upload(bob, make_image, "very-unsure.jpg", top=0.05)
    return {"corrected": corrected, "unsure": unsure, "confident": confident, "very_unsure": very_unsure}


def queue_order(html: str, pictures: dict[str, Upload]) -> list[str]:
    found = [(html.find(f"/review/{u.pk}/image"), name) for name, u in pictures.items()]
    return [name for position, name in sorted(found) if position >= 0]


def test_the_queue_holds_corrections_and_unsure_results_least_confident_first(
    reviewer_client, pictures
):
    response = reviewer_client.get("/review/")

    assert response.status_code == 200
    html = response.content.decode()
    assert queue_order(html, pictures) == ["very_unsure", "unsure", "corrected"]
    assert "3 waiting" in html
    assert "my neighbour&#x27;s cat" in html  # the owner's proposed label
    # Each item shows the model's top 3 and its decision form.
    assert html.count('class="review-predictions"') == 3
    assert html.count('name="decision" value="accepted"') == 3


def test_a_user_without_the_permission_finds_no_queue_and_no_picture(
    alice_client, bob_client, alice, pictures
):
    bobs = pictures["very_unsure"]
    for client in (alice_client, bob_client):
        assert client.get("/review/").status_code == 404
        assert client.get(f"/review/{bobs.pk}/image").status_code == 404
        assert client.post(f"/review/{bobs.pk}/decide/", {"decision": "accepted"}).status_code == 404
    assert not Review.objects.exists()
    # Nor is there a link to it.
    assert 'href="/review/"' not in alice_client.get("/history/").content.decode()


def test_a_reviewer_sees_only_the_pictures_the_queue_would_show(reviewer_client, pictures):
    shown = reviewer_client.get(f"/review/{pictures['very_unsure'].pk}/image")
    corrected = reviewer_client.get(f"/review/{pictures['corrected'].pk}/image")
    not_in_queue = reviewer_client.get(f"/review/{pictures['confident'].pk}/image")

    assert (shown.status_code, corrected.status_code) == (200, 200)
    assert shown["Content-Type"] == "image/jpeg"
    assert not_in_queue.status_code == 404
    # Nor any user page of someone else's upload.
    assert reviewer_client.get(f"/uploads/{pictures['very_unsure'].pk}/").status_code == 404


def test_accepting_a_correction_records_who_and_when_and_the_owner_sees_it(
    reviewer_client, reviewer, alice_client, alice_api, pictures
):
    corrected = pictures["corrected"]

    response = reviewer_client.post(
        f"/review/{corrected.pk}/decide/", {"decision": "accepted", "at": "2"}, follow=True
    )

    correction = Correction.objects.get(upload=corrected)
    assert (correction.status, correction.reviewed_by) == ("accepted", reviewer)
    [review] = Review.objects.all()
    assert (review.reviewer, review.decision, review.proposed_label, review.label) == (
        reviewer, "accepted", "my neighbour's cat", "my neighbour's cat"
    )
    assert review.created_at == correction.reviewed_at
    assert "Accepted “my neighbour’s cat”" in response.content.decode().replace("&#x27;", "’")
    assert queue_order(response.content.decode(), pictures) == ["very_unsure", "unsure"]
    assert 'data-status="accepted"' in alice_client.get(f"/uploads/{corrected.pk}/").content.decode()
    assert alice_api.get(f"/api/v1/classifications/{corrected.pk}/").json()["correction"][
        "status"
    ] == "accepted"


def test_rejecting_a_correction_marks_it_rejected(reviewer_client, pictures):
    corrected = pictures["corrected"]

    reviewer_client.post(f"/review/{corrected.pk}/decide/", {"decision": "rejected"})

    assert Correction.objects.get(upload=corrected).status == "rejected"
    assert Review.objects.get().label == ""


def test_relabelling_a_correction_replaces_its_label_with_the_category_and_accepts_it(
    reviewer_client, pictures
):
    corrected = pictures["corrected"]
    category = a_category_other_than(corrected.classification.top_label)

    reviewer_client.post(
        f"/review/{corrected.pk}/decide/", {"decision": "edited", "label": category.upper()}
    )

    correction = Correction.objects.get(upload=corrected)
    assert (correction.label, correction.status) == (category, "accepted")
    assert correction.index == get_classifier().manifest().categories.index(category)
    review = Review.objects.get()
    assert (review.decision, review.proposed_label, review.label) == (
        "edited", "my neighbour's cat", category
    )


def test_accepting_an_unsure_result_confirms_the_models_label_and_it_leaves_the_queue(
    reviewer_client, pictures
):
    unsure = pictures["very_unsure"]

    reviewer_client.post(f"/review/{unsure.pk}/decide/", {"decision": "accepted"})

    review = Review.objects.get()
    assert (review.decision, review.label, review.correction) == (
        "accepted", unsure.classification.top_label, None
    )
    assert not Correction.objects.filter(upload=unsure).exists()
    html = reviewer_client.get("/review/").content.decode()
    assert queue_order(html, pictures) == ["unsure", "corrected"]
    # Its result is still uncertain, so its picture stays open to reviewers.
    assert reviewer_client.get(f"/review/{unsure.pk}/image").status_code == 200


def test_relabelling_an_unsure_result_gives_the_owner_an_accepted_correction_by_the_reviewer(
    reviewer_client, reviewer, bob_client, pictures
):
    unsure = pictures["very_unsure"]

    reviewer_client.post(
        f"/review/{unsure.pk}/decide/", {"decision": "edited", "label": "  a  red kite "}
    )

    correction = Correction.objects.get(upload=unsure)
    assert (correction.user, correction.label, correction.index, correction.status) == (
        reviewer, "a red kite", None, "accepted"
    )
    page = bob_client.get(f"/uploads/{unsure.pk}/").content.decode()
    assert "A reviewer said this is" in page and 'data-status="accepted"' in page


def test_a_decided_item_cannot_be_decided_twice(reviewer_client, superuser, pictures):
    corrected = pictures["corrected"]
    reviewer_client.post(f"/review/{corrected.pk}/decide/", {"decision": "accepted"})
    admin = Client()
    admin.force_login(superuser)

    response = admin.post(f"/review/{corrected.pk}/decide/", {"decision": "rejected"}, follow=True)

    assert "Someone has already decided on this picture" in response.content.decode()
    assert Correction.objects.get(upload=corrected).status == "accepted"
    assert Review.objects.count() == 1


@pytest.mark.parametrize(
    "data, message",
    [
        ({"decision": "maybe"}, "Decide accept, reject or edit."),
        ({"decision": "edited", "label": "   "}, "the label is empty"),
        ({"decision": "edited", "label": "bad\x07"}, "control characters"),
    ],
)
def test_a_bad_decision_is_explained_and_records_nothing(reviewer_client, pictures, data, message):
    unsure = pictures["unsure"]

    response = reviewer_client.post(f"/review/{unsure.pk}/decide/", data, follow=True)

    assert message in response.content.decode()
    assert not Review.objects.exists() and not Correction.objects.filter(upload=unsure).exists()


def test_after_a_decision_the_next_item_takes_the_decided_ones_place(reviewer_client, pictures):
    # The reviewer moved to the second item (unsure.jpg) and decided on it.
    response = reviewer_client.post(
        f"/review/{pictures['unsure'].pk}/decide/", {"decision": "rejected", "at": "1"}
    )

    assert response["Location"] == "/review/?at=1"
    html = reviewer_client.get(response["Location"]).content.decode()
    selected = html.split('is-selected"', 1)[1].split("</li>", 1)[0]
    assert f"/review/{pictures['corrected'].pk}/image" in selected


def test_reviewers_have_a_link_to_the_queue(reviewer_client):
    assert 'href="/review/"' in reviewer_client.get("/history/").content.decode()
