"""/api/v1/classifications/: upload, list, fetch and delete through the REST API."""

from __future__ import annotations

import hashlib
import io

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from recognition.configured_classifier import get_classifier
from recognition.models import Classification, StoredImage, Upload
from tests.web_fixtures import as_upload, media_files, set_prediction_label

pytestmark = pytest.mark.django_db

URL = "/api/v1/classifications/"


def post_image(client, data: bytes, name: str = "photo.jpg", **extra) -> object:
    return client.post(URL, {"image": as_upload(data, name), **extra}, format="multipart")


def test_it_classifies_an_uploaded_image(alice_api, make_image):
    data = make_image()

    response = post_image(alice_api, data)

    assert response.status_code == 201
    body = response.json()
    model = get_classifier().identity()
    assert body["id"] == Upload.objects.get().pk
    assert body["image"] == {
        "sha256": hashlib.sha256(data).hexdigest(),
        "width": 64,
        "height": 48,
        "format": "JPEG",
        "bytes": len(data),
    }
    # "current": this is the active model's result, not one kept from an older model.
    assert body["model"] == {"name": model.name, "version": model.version, "current": True}
    assert body["duplicate"] is False
    assert body["filename"] == "photo.jpg"
    assert body["inference_ms"] > 0
    assert len(body["predictions"]) == 3
    scores = [p["score"] for p in body["predictions"]]
    assert scores == sorted(scores, reverse=True)
    assert all(0 <= s <= 1 for s in scores)
    assert {"label", "index", "score"} == set(body["predictions"][0])


def test_it_returns_as_many_predictions_as_top_k_asks_for(alice_api, make_image):
    response = post_image(alice_api, make_image(), top_k=10)

    assert response.status_code == 201
    assert len(response.json()["predictions"]) == 10


def test_the_same_image_again_answers_200_with_the_same_id_and_no_new_inference(
    alice_api, make_image, inference_calls
):
    data = make_image()
    first = post_image(alice_api, data).json()

    response = post_image(alice_api, data, "again.jpg")

    assert response.status_code == 200
    assert response.json()["id"] == first["id"]
    assert response.json()["duplicate"] is True
    assert response.json()["predictions"] == first["predictions"]
    assert inference_calls == [1]
    assert len(media_files()) == 1


def test_the_same_image_from_another_user_is_new_to_them(
    alice_api, bob_api, make_image, inference_calls
):
    data = make_image()
    alices = post_image(alice_api, data).json()

    response = post_image(bob_api, data, "mine.jpg")

    assert response.status_code == 201
    bobs = response.json()
    assert bobs["id"] != alices["id"]
    assert bobs["duplicate"] is False
    assert bobs["filename"] == "mine.jpg"
    assert bobs["created_at"] != alices["created_at"]
    assert inference_calls == [1]
    assert len(media_files()) == 1


def test_it_lists_only_the_users_own_uploads_newest_first(alice_api, bob_api, make_image):
    ids = [post_image(alice_api, make_image(), f"{n}.jpg").json()["id"] for n in range(3)]
    post_image(bob_api, make_image())

    response = alice_api.get(URL)

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 3
    assert [item["id"] for item in body["results"]] == ids[::-1]
    assert "duplicate" not in body["results"][0]


def test_a_repeated_upload_moves_to_the_top_of_the_list(alice_api, make_image):
    oldest = make_image()
    first_id = post_image(alice_api, oldest).json()["id"]
    post_image(alice_api, make_image())

    post_image(alice_api, oldest)

    assert alice_api.get(URL).json()["results"][0]["id"] == first_id


def test_the_list_is_paginated(alice_api, make_image):
    ids = [post_image(alice_api, make_image()).json()["id"] for _ in range(5)]

    first = alice_api.get(URL, {"page_size": 2}).json()
    last = alice_api.get(URL, {"page_size": 2, "page": 3}).json()

    assert first["count"] == 5
    assert [item["id"] for item in first["results"]] == [ids[4], ids[3]]
    assert "page=2" in first["next"]
    assert [item["id"] for item in last["results"]] == [ids[0]]
    assert last["next"] is None
    assert alice_api.get(URL, {"page_size": 2, "page": 4}).status_code == 404


def test_the_list_filters_by_any_of_the_top_three_labels_in_part_and_in_any_case(
    alice_api, bob_api, make_image
):
    top, third, fourth, other = (
        Upload.objects.get(pk=post_image(alice_api, make_image()).json()["id"]) for _ in range(4)
    )
    bobs = Upload.objects.get(pk=post_image(bob_api, make_image()).json()["id"])
    set_prediction_label(top, 1, "unicorn")
    set_prediction_label(third, 3, "baby unicorn")
    set_prediction_label(fourth, 4, "unicorn")  # beyond what a user is shown: not searched
    set_prediction_label(other, 1, "griffin")
    set_prediction_label(bobs, 1, "unicorn")

    response = alice_api.get(URL, {"label": "UNICORN"})

    assert response.status_code == 200
    assert response.json()["count"] == 2
    assert {item["id"] for item in response.json()["results"]} == {top.pk, third.pk}
    assert [item["id"] for item in alice_api.get(URL, {"label": "riff"}).json()["results"]] == [other.pk]
    assert alice_api.get(URL, {"label": "no such label anywhere"}).json()["count"] == 0


def test_it_fetches_one_upload(alice_api, make_image):
    created = post_image(alice_api, make_image()).json()

    response = alice_api.get(f"{URL}{created['id']}/", {"top_k": 5})

    assert response.status_code == 200
    body = response.json()
    assert body["id"] == created["id"]
    assert body["image"] == created["image"]
    assert body["predictions"][:3] == created["predictions"]
    assert len(body["predictions"]) == 5


def test_it_deletes_an_upload(alice_api, make_image, django_capture_on_commit_callbacks):
    created = post_image(alice_api, make_image()).json()

    with django_capture_on_commit_callbacks(execute=True):
        response = alice_api.delete(f"{URL}{created['id']}/")

    assert response.status_code == 204
    assert alice_api.get(f"{URL}{created['id']}/").status_code == 404
    assert not StoredImage.objects.exists()
    assert not Classification.objects.exists()
    assert not media_files()


def test_session_login_works_for_the_browser(alice_client, make_image):
    response = alice_client.post(URL, {"image": as_upload(make_image())})

    assert response.status_code == 201


def test_a_session_post_without_a_csrf_token_is_refused(alice, make_image):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(alice)

    response = client.post(URL, {"image": as_upload(make_image())}, format="multipart")

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    assert "CSRF" in response.json()["error"]["message"]
    assert not Upload.objects.exists()


@pytest.mark.parametrize(
    "method, path",
    [("get", URL), ("post", URL), ("get", f"{URL}1/"), ("delete", f"{URL}1/"), ("get", "/api/v1/models/active/")],
)
def test_anonymous_requests_get_401_in_json(db, method, path):
    response = getattr(APIClient(), method)(path)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
    assert response["WWW-Authenticate"].startswith("Token")


def test_a_token_made_with_drf_create_token_authenticates(alice, make_image):
    out = io.StringIO()
    call_command("drf_create_token", "alice", stdout=out)
    token = out.getvalue().split()[2]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")

    response = post_image(client, make_image())

    assert response.status_code == 201
    assert Upload.objects.get().user == alice


def test_a_wrong_token_gets_401(db):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")

    response = client.get(URL)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"
