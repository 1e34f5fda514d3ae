"""The admin is for review: it lists everything with thumbnails, filters and search,
keeps predictions read-only, and is closed to ordinary users."""

from __future__ import annotations

import pytest

from recognition.models import Classification, StoredImage, Upload
from recognition.services import upload_classify
from tests.web_fixtures import as_upload, make_pending_thumbnails, media_files, set_prediction_label

pytestmark = pytest.mark.django_db

CHANGELISTS = [
    "/admin/recognition/storedimage/",
    "/admin/recognition/classification/",
    "/admin/recognition/upload/",
]


RETIRED_VERSION = "retired0000"


@pytest.fixture
def uploads(alice, bob, make_image) -> list[Upload]:
    """Alice and Bob share a "unicorn"; only Alice has a "griffin", classified by a model
    version that is no longer the active one."""
    shared = make_image()
    made = [
        upload_classify(user=alice, file=as_upload(shared, "shared.jpg")).upload,
        upload_classify(user=bob, file=as_upload(shared, "bobs-copy.jpg")).upload,
        upload_classify(user=alice, file=as_upload(make_image(), "only-alice.jpg")).upload,
    ]
    set_prediction_label(made[0], 1, "unicorn")
    set_prediction_label(made[2], 1, "griffin")
    Classification.objects.filter(pk=made[2].classification_id).update(model_version=RETIRED_VERSION)
    return [Upload.objects.select_related("classification").get(pk=u.pk) for u in made]


def _filenames(response) -> set[str]:
    assert response.status_code == 200
    return {u.original_filename for u in response.context["cl"].result_list}


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
    make_pending_thumbnails()

    assert superuser_client.get(url).status_code == 200
    assert superuser_client.get(url)["Content-Type"] == "image/jpeg"
    assert alice_client.get(url).status_code == 302


def test_uploads_show_their_user_and_filter_by_user_and_label(superuser_client, uploads, alice):
    def listed(**query) -> set[str]:
        return _filenames(superuser_client.get("/admin/recognition/upload/", query))

    assert listed() == {"shared.jpg", "bobs-copy.jpg", "only-alice.jpg"}
    assert listed(user__id__exact=alice.pk) == {"shared.jpg", "only-alice.jpg"}
    assert listed(classification__top_label="griffin") == {"only-alice.jpg"}
    assert listed(classification__top_label="unicorn") == {"shared.jpg", "bobs-copy.jpg"}
    assert listed(classification__model_version=RETIRED_VERSION) == {"only-alice.jpg"}


def test_the_admin_searches_by_filename_hash_and_label(superuser_client, uploads):
    def found(term: str) -> set[str]:
        response = superuser_client.get("/admin/recognition/upload/", {"q": term})
        return {u.original_filename for u in response.context["cl"].result_list}

    assert found("bobs-copy") == {"bobs-copy.jpg"}
    assert found(uploads[2].stored_image.sha256) == {"only-alice.jpg"}
    assert found("GRIFF") == {"only-alice.jpg"}
    assert found("unicorn") == {"shared.jpg", "bobs-copy.jpg"}


def test_classifications_filter_by_model_version(superuser_client, uploads):
    active = uploads[0].classification
    retired = uploads[2].classification
    assert active.model_version != RETIRED_VERSION

    def listed(**query) -> set[int]:
        response = superuser_client.get("/admin/recognition/classification/", query)
        assert response.status_code == 200
        return {c.pk for c in response.context["cl"].result_list}

    assert listed() == {active.pk, retired.pk}
    assert listed(model_version=active.model_version) == {active.pk}
    assert listed(model_version=RETIRED_VERSION) == {retired.pk}
    assert listed(top_label="griffin") == {retired.pk}


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
