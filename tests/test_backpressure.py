"""A full queue for the model sheds load: an upload is answered at once with 503
`overloaded` and Retry-After, through the API and the upload page alike, nothing of it is
kept, health says the node is overloaded, and uploads succeed again once there is room."""

from __future__ import annotations

import pytest

from recognition.configured_classifier import get_classifier
from recognition.engine.batching import BatchingClassifier
from recognition.models import StoredImage, Upload
from tests.web_fixtures import as_upload, assert_nothing_written

pytestmark = pytest.mark.django_db

API = "/api/v1/classifications/"


@pytest.fixture
def full_queue():
    """The served classifier with as many requests outstanding as it may queue: a fake
    for the one fault a test cannot make by load without timing it (the queue's state)."""
    classifier = get_classifier()
    assert isinstance(classifier, BatchingClassifier)  # the default layout batches
    # The classifier serves the whole session: start, and leave it, with no shed history.
    classifier.shed, classifier._last_shed = 0, float("-inf")
    classifier._outstanding = classifier.max_queue
    yield classifier
    classifier.shed, classifier._last_shed = 0, float("-inf")
    classifier._outstanding = 0


def test_an_upload_to_a_full_queue_is_shed_at_once_and_nothing_is_kept(
    alice_api, make_image, full_queue
):
    response = alice_api.post(API, {"image": as_upload(make_image(seed=3))}, format="multipart")

    assert response.status_code == 503
    assert response["Retry-After"] == "2"
    error = response.json()["error"]
    assert error["code"] == "overloaded"
    assert "too busy" in error["message"] and "nothing was saved" in error["message"]
    assert (Upload.objects.count(), StoredImage.objects.count()) == (0, 0)
    assert_nothing_written()
    assert full_queue.shed == 1


def test_the_upload_page_says_the_same_when_it_sheds(alice_client, make_image, full_queue):
    response = alice_client.post("/", {"images": [as_upload(make_image(seed=4), "busy.jpg")]})

    assert response.status_code == 503
    assert "too busy to recognise this image right now" in response.content.decode()
    assert Upload.objects.count() == 0


def test_health_reports_overloaded_while_shedding(client, alice_api, make_image, full_queue):
    assert client.get("/api/v1/health/").json()["status"] == "ok"

    alice_api.post(API, {"image": as_upload(make_image(seed=5))}, format="multipart")
    health = client.get("/api/v1/health/")

    assert health.status_code == 503
    assert health.json() == {"status": "overloaded", "model_loaded": True, "database": True}


def test_uploads_succeed_again_once_the_queue_has_room(alice_api, make_image, full_queue):
    shed = alice_api.post(API, {"image": as_upload(make_image(seed=6))}, format="multipart")
    full_queue._outstanding = full_queue.max_queue - 1

    accepted = alice_api.post(API, {"image": as_upload(make_image(seed=6))}, format="multipart")

    assert (shed.status_code, accepted.status_code) == (503, 201)
    assert Upload.objects.count() == 1
