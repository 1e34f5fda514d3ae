"""Thumbnails are made by a background task after the upload commits: the task run here
in-process is the worker's own function (tests/test_worker.py runs a real worker). The
page shows a placeholder until the thumbnail exists; a duplicate delivery does nothing;
a worker that died mid-task is noticed by its stale claim and its work queued again."""

from __future__ import annotations

import threading
from datetime import timedelta
from io import BytesIO

import pytest
from amqp.exceptions import ChannelError
from django.utils import timezone
from PIL import Image

from classifier_site.celery import app
from recognition import storage, tasks, thumbnails
from recognition.models import StoredImage, ThumbnailState
from recognition.services import upload_classify
from tests.web_fixtures import as_upload, make_pending_thumbnails

pytestmark = pytest.mark.django_db

THUMBNAIL_URL = "/uploads/{}/thumbnail"


def queued_messages() -> int:
    """Messages waiting in the broker's default queue (embedded or Redis alike)."""
    with app.connection_for_write() as connection:
        try:
            return connection.default_channel.queue_declare("celery", passive=True).message_count
        except ChannelError:  # Redis: an empty queue does not exist
            return 0


def test_an_upload_queues_its_thumbnail_once_it_is_committed(
    alice, make_image, django_capture_on_commit_callbacks
):
    before = queued_messages()

    with django_capture_on_commit_callbacks(execute=True):
        upload_classify(user=alice, file=as_upload(make_image()))
        assert queued_messages() == before  # nothing until the commit
    assert queued_messages() == before + 1
    with django_capture_on_commit_callbacks(execute=True):
        upload_classify(user=alice, file=as_upload(make_image(seed=7)))
        upload_classify(user=alice, file=as_upload(make_image(seed=7)))  # known bytes

    assert queued_messages() == before + 2


def test_the_page_shows_a_placeholder_until_the_thumbnail_is_made(alice, alice_client, make_image):
    upload = upload_classify(user=alice, file=as_upload(make_image(size=(600, 400)))).upload
    url = THUMBNAIL_URL.format(upload.pk)

    waiting = alice_client.get(url)
    assert waiting.status_code == 200
    assert waiting["Content-Type"] == "image/svg+xml"
    assert waiting["Cache-Control"] == "no-store"
    assert b"Preview coming" in waiting.content

    assert make_pending_thumbnails() == 1
    made = alice_client.get(url)
    assert made["Content-Type"] == "image/jpeg"
    assert "max-age" in made["Cache-Control"]
    assert Image.open(BytesIO(b"".join(made.streaming_content))).size == (256, 171)
    assert StoredImage.objects.get().thumbnail_state == ThumbnailState.READY


def test_a_second_delivery_of_the_same_task_does_nothing(alice, make_image, monkeypatch):
    upload = upload_classify(user=alice, file=as_upload(make_image())).upload
    saved = []
    real_save = storage.save
    monkeypatch.setattr(storage, "save", lambda name, data: saved.append(name) or real_save(name, data))

    results = [tasks.make_thumbnail(upload.stored_image_id) for _ in range(3)]

    assert results == ["made", "nothing to do", "nothing to do"]
    assert saved == [storage.thumbnail_name(upload.stored_image.sha256)]
    assert StoredImage.objects.get().thumbnail_attempts == 1


def test_an_original_that_cannot_be_decoded_is_marked_failed_with_the_reason(
    alice, alice_client, make_image
):
    data = make_image(seed=41)
    upload = upload_classify(user=alice, file=as_upload(data)).upload
    storage.save(upload.stored_image.path, data[: len(data) // 3])  # damaged after the upload

    assert tasks.make_thumbnail(upload.stored_image_id) == "failed"

    stored = StoredImage.objects.get()
    assert stored.thumbnail_state == ThumbnailState.FAILED
    assert stored.thumbnail_error  # the decoder's reason, for the admin
    assert stored.thumbnail_claimed_at is None
    assert alice_client.get(THUMBNAIL_URL.format(upload.pk)).status_code == 404


def test_a_task_whose_storage_fails_is_left_pending_for_the_sweep(alice, make_image, monkeypatch):
    upload = upload_classify(user=alice, file=as_upload(make_image())).upload

    def refuse(name, data):
        raise storage.StorageError("the object store is unreachable")

    monkeypatch.setattr(storage, "save", refuse)

    assert tasks.make_thumbnail(upload.stored_image_id) == "retry"
    stored = StoredImage.objects.get()
    assert stored.thumbnail_state == ThumbnailState.PENDING
    assert stored.thumbnail_attempts == 1


def _age_claim(stored_id: int, seconds: float, *, attempts: int | None = None) -> None:
    fields = {"thumbnail_claimed_at": timezone.now() - timedelta(seconds=seconds)}
    if attempts is not None:
        fields["thumbnail_attempts"] = attempts
    StoredImage.objects.filter(pk=stored_id).update(**fields)


def test_the_sweep_queues_again_only_the_thumbnails_whose_claim_went_stale(
    alice, make_image, settings
):
    settings.RECOGNITION_TASK_STALE_SECONDS = 60
    dead, alive = (
        upload_classify(user=alice, file=as_upload(make_image())).upload.stored_image_id
        for _ in range(2)
    )
    _age_claim(dead, 61)
    _age_claim(alive, 5)
    before = queued_messages()

    assert tasks.sweep() == 1
    assert queued_messages() == before + 1
    # The dead worker's row is taken by the next delivery; the live worker's is not.
    assert tasks.make_thumbnail(alive) == "nothing to do"
    assert tasks.make_thumbnail(dead) == "made"
    assert StoredImage.objects.get(pk=dead).thumbnail_attempts == 1


def test_the_sweep_queues_a_thumbnail_whose_message_never_arrived(alice, make_image, settings):
    settings.RECOGNITION_TASK_STALE_SECONDS = 60
    stored_id = upload_classify(user=alice, file=as_upload(make_image())).upload.stored_image_id

    assert tasks.sweep() == 0  # just uploaded: its message is on its way
    StoredImage.objects.filter(pk=stored_id).update(created_at=timezone.now() - timedelta(seconds=61))
    assert tasks.sweep() == 1


def test_the_sweep_sends_a_waiting_thumbnail_again_once_per_stale_limit_not_every_sweep(
    alice, make_image, settings
):
    # A backlog of thumbnails behind a long import: each sweep must not add another copy
    # of every waiting message to the queue.
    settings.RECOGNITION_TASK_STALE_SECONDS = 60
    stored_id = upload_classify(user=alice, file=as_upload(make_image())).upload.stored_image_id
    StoredImage.objects.filter(pk=stored_id).update(created_at=timezone.now() - timedelta(seconds=61))
    before = queued_messages()

    assert [tasks.sweep(), tasks.sweep()] == [1, 0]
    assert queued_messages() == before + 1
    StoredImage.objects.filter(pk=stored_id).update(
        thumbnail_queued_at=timezone.now() - timedelta(seconds=61)
    )
    assert tasks.sweep() == 1  # still not taken a stale limit later: sent once more


def test_the_sweep_gives_up_on_a_thumbnail_tried_too_often(alice, make_image):
    stored_id = upload_classify(user=alice, file=as_upload(make_image())).upload.stored_image_id
    _age_claim(stored_id, 3600, attempts=tasks.MAX_THUMBNAIL_ATTEMPTS)

    assert tasks.sweep() == 0

    stored = StoredImage.objects.get()
    assert stored.thumbnail_state == ThumbnailState.FAILED
    assert "Gave up" in stored.thumbnail_error


def test_a_thumbnail_removed_from_the_storage_is_made_again(alice, alice_client, make_image):
    upload = upload_classify(user=alice, file=as_upload(make_image())).upload
    make_pending_thumbnails()
    storage.delete_quietly(storage.thumbnail_name(upload.stored_image.sha256))

    assert alice_client.get(THUMBNAIL_URL.format(upload.pk))["Content-Type"] == "image/svg+xml"
    assert make_pending_thumbnails() == 1
    assert alice_client.get(THUMBNAIL_URL.format(upload.pk))["Content-Type"] == "image/jpeg"


@pytest.mark.django_db(transaction=True)
def test_a_live_worker_keeps_renewing_its_claim_so_nobody_takes_it_over(
    alice, make_image, settings, monkeypatch
):
    """The claim is renewed while the task works: the rendering here waits until it has
    seen two renewals, longer than the stale limit lasts without them."""
    settings.RECOGNITION_TASK_STALE_SECONDS = 1
    stored_id = upload_classify(user=alice, file=as_upload(make_image())).upload.stored_image_id
    renewals: list[object] = []
    real_render = thumbnails.render
    stop = threading.Event()

    def slow_render(stored):
        seen = StoredImage.objects.get(pk=stored.pk).thumbnail_claimed_at
        while len(renewals) < 2 and not stop.wait(0.05):
            claimed = StoredImage.objects.get(pk=stored.pk).thumbnail_claimed_at
            if claimed != seen:
                renewals.append(claimed)
                seen = claimed
                assert tasks.make_thumbnail(stored.pk) == "nothing to do"  # not stale
        return real_render(stored)

    monkeypatch.setattr(thumbnails, "render", slow_render)
    timer = threading.Timer(120, stop.set)  # only catches a hang
    timer.start()
    try:
        assert tasks.make_thumbnail(stored_id) == "made"
    finally:
        timer.cancel()

    assert len(renewals) == 2
    assert StoredImage.objects.get().thumbnail_attempts == 1
