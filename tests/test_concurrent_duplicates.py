"""Uploads of the same new image at the same moment: one image, one classification,
and every request succeeds. Real threads, real connections, a file-backed database."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from recognition.models import Classification, Prediction, StoredImage, Upload
from recognition.services import UploadOutcome, upload_classify
from tests.web_fixtures import as_upload, media_files, patch_every_classifier, stored_bytes

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def inference_in_step(monkeypatch):
    """Holds each inference until the other request is inferring too, so both have
    decided the image is new before either writes: the race, every time."""
    barrier = threading.Barrier(2, timeout=120)  # only catches a hang

    def in_step(real_classify):
        def classify_together(self, images, top_k=3):
            barrier.wait()
            return real_classify(self, images, top_k=top_k)

        return classify_together

    patch_every_classifier(monkeypatch, in_step)
    return barrier


def _upload_in_threads(users, data: bytes) -> list[UploadOutcome]:
    def upload(user) -> UploadOutcome:
        try:
            return upload_classify(user=user, file=as_upload(data))
        finally:
            connection.close()  # each thread has its own connection

    with ThreadPoolExecutor(max_workers=len(users)) as pool:
        return list(pool.map(upload, users))


def test_two_users_uploading_the_same_new_image_at_once_both_succeed_with_one_copy(
    alice, bob, make_image, inference_in_step
):
    data = make_image()

    outcomes = _upload_in_threads([alice, bob], data)

    assert [o.upload.user.username for o in outcomes] == ["alice", "bob"]
    assert [o.duplicate for o in outcomes] == [False, False]
    assert StoredImage.objects.count() == 1
    assert Classification.objects.count() == 1
    assert Prediction.objects.count() == 10
    assert Upload.objects.count() == 2
    assert outcomes[0].upload.classification_id == outcomes[1].upload.classification_id
    [name] = media_files()  # and no temporary file left over
    assert stored_bytes(name) == data


def test_one_user_sending_the_same_new_image_twice_at_once_gets_one_upload(
    alice, make_image, inference_in_step
):
    data = make_image()

    outcomes = _upload_in_threads([alice, alice], data)

    assert outcomes[0].upload.pk == outcomes[1].upload.pk
    assert sorted(o.duplicate for o in outcomes) == [False, True]
    assert Upload.objects.count() == 1
    assert StoredImage.objects.count() == 1
    assert Classification.objects.count() == 1
    assert len(media_files()) == 1
