"""Alice's uploads do not exist for Bob: every way of reaching one is a 404, and
nothing Bob sees tells him that Alice uploaded the same picture."""

from __future__ import annotations

from datetime import datetime

import pytest

from recognition.models import Upload
from recognition.services import upload_classify
from tests.web_fixtures import as_upload, media_files

pytestmark = pytest.mark.django_db


@pytest.fixture
def alices_upload(alice, make_image) -> Upload:
    return upload_classify(user=alice, file=as_upload(make_image(), "alice-private.jpg")).upload


@pytest.mark.parametrize("suffix", ["", "delete/", "image", "thumbnail"])
def test_bob_gets_404_for_every_page_of_alices_upload(bob_client, alices_upload, suffix):
    response = bob_client.get(f"/uploads/{alices_upload.pk}/{suffix}")

    assert response.status_code == 404
    assert "alice-private.jpg" not in response.content.decode(errors="replace")


def test_bob_cannot_delete_alices_upload_from_the_page(bob_client, alices_upload):
    response = bob_client.post(f"/uploads/{alices_upload.pk}/delete/")

    assert response.status_code == 404
    assert Upload.objects.filter(pk=alices_upload.pk).exists()
    assert len(media_files()) == 1


@pytest.mark.parametrize("method", ["get", "delete"])
def test_bob_gets_404_for_alices_upload_in_the_api(bob_api, alices_upload, method):
    response = getattr(bob_api, method)(f"/api/v1/classifications/{alices_upload.pk}/")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert Upload.objects.filter(pk=alices_upload.pk).exists()


def test_bobs_history_and_list_do_not_show_alices_uploads(bob_client, bob_api, alices_upload):
    page = bob_client.get("/history/").content.decode()
    listing = bob_api.get("/api/v1/classifications/").json()

    assert "alice-private.jpg" not in page
    assert listing["count"] == 0
    label = alices_upload.classification.top_label
    assert bob_api.get("/api/v1/classifications/", {"label": label}).json()["count"] == 0


def test_uploading_alices_picture_tells_bob_nothing_about_her(alice, bob_api, make_image):
    data = make_image()
    alices = upload_classify(user=alice, file=as_upload(data, "alice-private.jpg")).upload

    response = bob_api.post("/api/v1/classifications/", {"image": as_upload(data, "bob.jpg")}, format="multipart")

    body = response.json()
    assert response.status_code == 201
    assert body["duplicate"] is False
    assert body["filename"] == "bob.jpg"
    assert body["id"] != alices.pk
    bobs = Upload.objects.get(pk=body["id"])
    # Instants, not strings: DRF writes UTC as "Z", Python's isoformat() as "+00:00".
    shown = {key: datetime.fromisoformat(body[key]) for key in ("created_at", "last_uploaded_at")}
    assert alices.created_at < bobs.created_at  # so showing hers would be seen
    assert shown == {"created_at": bobs.created_at, "last_uploaded_at": bobs.last_uploaded_at}
    assert alices.created_at not in shown.values()
    assert "alice" not in response.content.decode()


def test_the_same_picture_shows_bob_his_own_dates_on_his_pages(alice, bob, bob_client, make_image):
    data = make_image()
    alices = upload_classify(user=alice, file=as_upload(data, "alice-private.jpg")).upload
    bobs = upload_classify(user=bob, file=as_upload(data, "bob.jpg")).upload

    html = bob_client.get(f"/uploads/{bobs.pk}/").content.decode()

    assert alices.created_at < bobs.created_at  # so showing hers would be seen
    assert f'datetime="{bobs.created_at.isoformat()}"' in html
    assert alices.created_at.isoformat() not in html
    assert "alice" not in html
