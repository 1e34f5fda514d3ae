"""upload_delete: a user's upload goes at once; the shared image goes with its last upload."""

from __future__ import annotations

import pytest
from django.http import Http404

from recognition.models import Classification, Prediction, StoredImage, Upload
from recognition.services import upload_classify, upload_delete
from tests.web_fixtures import as_upload, make_pending_thumbnails, media_files, stored_bytes

pytestmark = pytest.mark.django_db


def _view_thumbnail(client, upload_id: int) -> None:
    make_pending_thumbnails()  # what the worker does after the upload
    assert client.get(f"/uploads/{upload_id}/thumbnail").status_code == 200


def test_deleting_the_only_upload_removes_the_image_its_results_and_its_files(
    alice, alice_client, make_image, django_capture_on_commit_callbacks
):
    upload = upload_classify(user=alice, file=as_upload(make_image())).upload
    _view_thumbnail(alice_client, upload.pk)
    assert len(media_files("thumbnails")) == 1

    with django_capture_on_commit_callbacks(execute=True):
        upload_delete(user=alice, upload_id=upload.pk)

    assert not Upload.objects.exists()
    assert not StoredImage.objects.exists()
    assert not Classification.objects.exists()
    assert not Prediction.objects.exists()
    assert not media_files()
    assert not media_files("thumbnails")


def test_a_shared_image_survives_until_its_last_upload_is_deleted(
    alice, bob, make_image, django_capture_on_commit_callbacks
):
    data = make_image()
    alices = upload_classify(user=alice, file=as_upload(data)).upload
    bobs = upload_classify(user=bob, file=as_upload(data)).upload

    with django_capture_on_commit_callbacks(execute=True):
        upload_delete(user=alice, upload_id=alices.pk)

    assert list(Upload.objects.all()) == [bobs]
    assert StoredImage.objects.count() == 1
    assert Classification.objects.count() == 1
    assert len(media_files()) == 1

    with django_capture_on_commit_callbacks(execute=True):
        upload_delete(user=bob, upload_id=bobs.pk)

    assert not StoredImage.objects.exists()
    assert not media_files()


def test_files_are_removed_only_once_the_deletion_is_committed(
    alice, make_image, django_capture_on_commit_callbacks
):
    upload = upload_classify(user=alice, file=as_upload(make_image())).upload

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        upload_delete(user=alice, upload_id=upload.pk)
        assert len(media_files()) == 1

    assert len(callbacks) == 1


def test_an_upload_of_the_same_bytes_between_a_delete_and_its_cleanup_keeps_its_file(
    alice, bob, make_image, django_capture_on_commit_callbacks
):
    data = make_image()
    alices = upload_classify(user=alice, file=as_upload(data)).upload
    with django_capture_on_commit_callbacks(execute=False) as cleanup:
        upload_delete(user=alice, upload_id=alices.pk)

    # Bob's upload commits after the delete did, finding the object still in place.
    bobs = upload_classify(user=bob, file=as_upload(data)).upload
    for callback in cleanup:
        callback()

    assert stored_bytes(bobs.stored_image.path) == data


def test_a_user_cannot_delete_someone_elses_upload(alice, bob, make_image):
    alices = upload_classify(user=alice, file=as_upload(make_image())).upload

    with pytest.raises(Http404):
        upload_delete(user=bob, upload_id=alices.pk)

    assert Upload.objects.filter(pk=alices.pk).exists()
    assert len(media_files()) == 1


def test_the_same_image_can_be_uploaded_again_after_being_deleted(
    alice, make_image, django_capture_on_commit_callbacks
):
    data = make_image()
    first = upload_classify(user=alice, file=as_upload(data)).upload
    with django_capture_on_commit_callbacks(execute=True):
        upload_delete(user=alice, upload_id=first.pk)

    again = upload_classify(user=alice, file=as_upload(data))

    assert again.duplicate is False
    assert stored_bytes(media_files()[0]) == data


def test_deleting_a_user_deletes_their_pictures_but_not_shared_ones(
    alice, bob, make_image, django_capture_on_commit_callbacks
):
    shared = make_image()
    upload_classify(user=alice, file=as_upload(shared))
    upload_classify(user=alice, file=as_upload(make_image()))
    bobs = upload_classify(user=bob, file=as_upload(shared)).upload

    with django_capture_on_commit_callbacks(execute=True):
        alice.delete()

    assert list(Upload.objects.all()) == [bobs]
    assert list(StoredImage.objects.all()) == [bobs.stored_image]
    assert len(media_files()) == 1
