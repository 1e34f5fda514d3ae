"""The admin is for review: it lists everything with thumbnails, filters and search,
keeps predictions read-only, and is closed to ordinary users."""

from __future__ import annotations

import pytest

from recognition.models import Classification, StoredImage, Upload
from recognition.services import upload_classify
from tests.web_fixtures import as_upload, media_files

pytestmark = pytest.mark.django_db

CHANGELISTS = [
    "/admin/recognition/storedimage/",
    "/admin/recognition/classification/",
    "/admin/recognition/upload/",
]


@pytest.fixture
def uploads(alice, bob, make_image) -> list[Upload]:
    shared = make_image()
    return [
        upload_classify(user=alice, file=as_upload(shared, "shared.jpg")).upload,
        upload_classify(user=bob, file=as_upload(shared, "bobs-copy.jpg")).upload,
        upload_classify(user=alice, file=as_upload(make_image(), "only-alice.jpg")).upload,
    ]


@pytest.mark.parametrize("url", CHANGELISTS)
def test_a_superuser_sees_every_changelist_with_thumbnails(superuser_client, uploads, url):
    response = superuser_client.get(url)

    assert response.status_code == 200
    assert "/thumbnail/" in response.content.decode()


@pytest.mark.parametrize("url", CHANGELISTS + ["/admin/"])
def test_an_ordinary_user_is_sent_to_the_admin_login(alice_client, url):
    response = alice_client.get(url)

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_the_admin_thumbnail_is_for_staff_only(superuser_client, alice_client, uploads):
    url = f"/admin/recognition/storedimage/{uploads[0].stored_image_id}/thumbnail/"

    assert superuser_client.get(url).status_code == 200
    assert superuser_client.get(url)["Content-Type"] == "image/jpeg"
    assert alice_client.get(url).status_code == 302


def test_uploads_show_their_user_and_filter_by_user_and_label(superuser_client, uploads, alice):
    everyone = superuser_client.get("/admin/recognition/upload/").content.decode()
    only_alice = superuser_client.get(f"/admin/recognition/upload/?user__id__exact={alice.pk}")
    label = uploads[2].classification.top_label
    by_label = superuser_client.get("/admin/recognition/upload/", {"classification__top_label": label})

    assert "bobs-copy.jpg" in everyone and "only-alice.jpg" in everyone
    assert {u.original_filename for u in only_alice.context["cl"].result_list} == {"shared.jpg", "only-alice.jpg"}
    assert uploads[2] in by_label.context["cl"].result_list
    assert all(u.classification.top_label == label for u in by_label.context["cl"].result_list)


def test_the_admin_searches_by_filename_hash_and_label(superuser_client, uploads):
    def found(term: str) -> set[str]:
        response = superuser_client.get("/admin/recognition/upload/", {"q": term})
        return {u.original_filename for u in response.context["cl"].result_list}

    assert found("bobs-copy") == {"bobs-copy.jpg"}
    assert found(uploads[2].stored_image.sha256) == {"only-alice.jpg"}
    assert "only-alice.jpg" in found(uploads[2].classification.top_label)


def test_classifications_filter_by_model_version(superuser_client, uploads):
    version = uploads[0].classification.model_version

    response = superuser_client.get("/admin/recognition/classification/", {"model_version": version})

    assert response.status_code == 200
    assert len(response.context["cl"].result_list) == Classification.objects.count() == 2


def test_predictions_are_read_only(superuser_client, uploads):
    classification = uploads[0].classification
    url = f"/admin/recognition/classification/{classification.pk}/change/"

    page = superuser_client.get(url)
    superuser_client.post(url, {"top_label": "edited", "top_score": "0.5"})

    assert page.status_code == 200
    html = page.content.decode()
    assert classification.top_label in html
    assert 'name="top_label"' not in html
    assert 'name="predictions-0-label"' not in html
    classification.refresh_from_db()
    assert classification.top_label != "edited"
    assert superuser_client.get("/admin/recognition/classification/add/").status_code == 403


def test_deleting_an_upload_in_the_admin_goes_through_the_service(
    superuser_client, uploads, django_capture_on_commit_callbacks
):
    only_alice = uploads[2]

    with django_capture_on_commit_callbacks(execute=True):
        response = superuser_client.post(
            f"/admin/recognition/upload/{only_alice.pk}/delete/", {"post": "yes"}
        )

    assert response.status_code == 302
    assert not StoredImage.objects.filter(pk=only_alice.stored_image_id).exists()
    assert len(media_files()) == 1


def test_bulk_deleting_uploads_keeps_images_others_still_use(
    superuser_client, uploads, django_capture_on_commit_callbacks
):
    alices_shared = uploads[0]

    with django_capture_on_commit_callbacks(execute=True):
        superuser_client.post(
            "/admin/recognition/upload/",
            {"action": "delete_selected", "_selected_action": [alices_shared.pk], "post": "yes"},
        )

    assert not Upload.objects.filter(pk=alices_shared.pk).exists()
    assert StoredImage.objects.filter(pk=alices_shared.stored_image_id).exists()
    assert len(media_files()) == 2
