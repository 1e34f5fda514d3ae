"""upload_classify: the one way an image enters the service."""

from __future__ import annotations

import hashlib
import io

import pytest
from django.core.files import File

from recognition import services, storage
from recognition.models import Classification, Prediction, StoredImage, Upload
from recognition.services import UploadTooLarge, upload_classify
from tests.web_fixtures import as_upload, media_files, patch_every_classifier, stored_bytes

pytestmark = pytest.mark.django_db


def test_it_stores_the_image_once_under_a_path_made_from_its_hash(alice, make_image):
    data = make_image()
    outcome = upload_classify(user=alice, file=as_upload(data, "../../etc/holiday.jpg"))

    sha256 = hashlib.sha256(data).hexdigest()
    stored = outcome.upload.stored_image
    assert stored.sha256 == sha256
    assert media_files() == [f"images/{sha256[:2]}/{sha256[2:4]}/{sha256}.jpg"]
    assert stored_bytes(media_files()[0]) == data
    assert (stored.width, stored.height, stored.format, stored.byte_size) == (64, 48, "JPEG", len(data))
    assert outcome.upload.original_filename == "holiday.jpg"
    assert outcome.duplicate is False


@pytest.mark.parametrize("draft", [False, True], ids=["full-decode", "draft-mode"])
def test_a_camera_sized_jpeg_is_classified_from_the_pixels_the_setting_asks_for(
    draft, alice, make_image, monkeypatch, settings
):
    settings.RECOGNITION_JPEG_DRAFT = draft
    seen: list[tuple[int, int]] = []

    def recording(real_classify):
        def classify(self, images, top_k=3):
            seen.extend(image.size for image in images)
            return real_classify(self, images, top_k=top_k)

        return classify

    patch_every_classifier(monkeypatch, recording)
    data = make_image(size=(4000, 3000))

    outcome = upload_classify(user=alice, file=as_upload(data))

    # Draft mode decodes at 1/4 scale (shorter side 750 >= 2 × the model's 256).
    assert seen == [(1000, 750) if draft else (4000, 3000)]
    stored = outcome.upload.stored_image
    assert (stored.width, stored.height) == (4000, 3000)
    assert stored_bytes(media_files()[0]) == data
    assert len(outcome.predictions) == 3


def test_it_keeps_the_top_ten_predictions_and_returns_the_top_k_asked_for(alice, make_image):
    outcome = upload_classify(user=alice, file=as_upload(make_image()), top_k=5)

    stored = list(Prediction.objects.filter(classification=outcome.upload.classification))
    assert [p.rank for p in stored] == list(range(1, 11))
    scores = [p.score for p in stored]
    assert scores == sorted(scores, reverse=True)
    assert [p.label for p in outcome.predictions] == [p.label for p in stored[:5]]
    classification = outcome.upload.classification
    assert (classification.top_label, classification.top_score) == (stored[0].label, stored[0].score)


def test_it_records_the_model_that_classified_the_image(alice, make_image):
    from recognition.configured_classifier import get_classifier

    outcome = upload_classify(user=alice, file=as_upload(make_image()))

    model = get_classifier().identity()
    assert outcome.upload.classification.model_name == model.name
    assert outcome.upload.classification.model_version == model.version


def test_the_same_bytes_from_the_same_user_reuse_everything_and_move_to_the_top(
    alice, make_image, inference_calls
):
    first_image = make_image()
    first = upload_classify(user=alice, file=as_upload(first_image, "first.jpg"))
    upload_classify(user=alice, file=as_upload(make_image(), "second.jpg"))
    assert len(inference_calls) == 2

    again = upload_classify(user=alice, file=as_upload(first_image, "renamed.jpg"))

    assert again.duplicate is True
    assert again.upload.pk == first.upload.pk
    assert again.upload.original_filename == "first.jpg"
    assert again.upload.last_uploaded_at > first.upload.last_uploaded_at
    assert again.upload.created_at == first.upload.created_at
    assert len(inference_calls) == 2
    assert len(media_files()) == 2
    assert Upload.objects.count() == 2
    assert Upload.objects.filter(user=alice).first().pk == first.upload.pk


def test_the_same_bytes_from_another_user_share_the_file_and_the_classification(
    alice, bob, make_image, inference_calls
):
    data = make_image()
    alices = upload_classify(user=alice, file=as_upload(data, "cat.jpg"))

    bobs = upload_classify(user=bob, file=as_upload(data, "kitty.jpg"))

    assert bobs.duplicate is False
    assert bobs.upload.pk != alices.upload.pk
    assert bobs.upload.user == bob
    assert bobs.upload.original_filename == "kitty.jpg"
    assert bobs.upload.created_at > alices.upload.created_at
    assert bobs.upload.classification == alices.upload.classification
    assert len(inference_calls) == 1
    assert len(media_files()) == 1
    assert StoredImage.objects.count() == 1


def test_a_rejected_top_k_is_a_programming_error(alice, make_image):
    with pytest.raises(ValueError):
        upload_classify(user=alice, file=as_upload(make_image()), top_k=11)
    assert not media_files()


class CountingBytes(io.BytesIO):
    """File content that counts the bytes read from it, however they are read."""

    def __init__(self, data: bytes):
        super().__init__(data)
        self.bytes_read = 0

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        self.bytes_read += len(chunk)
        return chunk

    def readinto(self, buffer) -> int:
        count = super().readinto(buffer)
        self.bytes_read += count
        return count


def test_it_refuses_a_file_over_the_byte_limit_before_reading_it(alice, make_image, settings):
    data = make_image()
    settings.RECOGNITION_MAX_UPLOAD_BYTES = len(data) - 1
    content = CountingBytes(data)

    with pytest.raises(UploadTooLarge):
        upload_classify(user=alice, file=File(content, name="photo.jpg"))

    assert content.bytes_read == 0
    assert not StoredImage.objects.exists()
    assert not media_files()


def test_it_stops_reading_a_file_that_understates_its_size_once_past_the_limit(
    alice, make_image, settings
):
    data = make_image(size=(1000, 1000))
    limit = settings.RECOGNITION_MAX_UPLOAD_BYTES = 100_000
    content = CountingBytes(data)
    file = File(content, name="photo.jpg")
    file.size = 1000  # what a client or handler claimed

    with pytest.raises(UploadTooLarge):
        upload_classify(user=alice, file=file)

    assert len(data) > limit + File.DEFAULT_CHUNK_SIZE  # so reading it all would be seen
    assert limit < content.bytes_read <= limit + File.DEFAULT_CHUNK_SIZE
    assert not media_files()


def test_it_leaves_no_rows_and_no_file_when_saving_the_upload_fails(alice, make_image, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(services, "_create_upload", broken)

    with pytest.raises(RuntimeError):
        upload_classify(user=alice, file=as_upload(make_image()))

    assert not StoredImage.objects.exists()
    assert not Classification.objects.exists()
    assert not Prediction.objects.exists()
    assert not Upload.objects.exists()
    assert not media_files()


def test_a_failed_upload_of_a_known_image_keeps_the_file_others_rely_on(
    alice, bob, make_image, monkeypatch
):
    data = make_image()
    upload_classify(user=alice, file=as_upload(data))

    monkeypatch.setattr(services, "_create_upload", lambda *a: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        upload_classify(user=bob, file=as_upload(data))

    assert len(media_files()) == 1
    assert list(Upload.objects.values_list("user__username", flat=True)) == ["alice"]


def test_it_puts_back_a_file_that_went_missing_from_the_storage(alice, bob, make_image):
    data = make_image()
    upload_classify(user=alice, file=as_upload(data))
    [name] = media_files()
    storage.delete(name)

    upload_classify(user=bob, file=as_upload(data))

    assert stored_bytes(name) == data


@pytest.mark.parametrize(
    "name, shown",
    [
        ("C:\\Users\\bob\\Pictures\\cat.png", "cat.png"),
        ("evil\x00name\n.jpg", "evilname.jpg"),
        ("\u202egnp.exe", "gnp.exe"),
        ("   ", "image"),
        ("..", "image"),
        ("a" * 300 + ".jpeg", "a" * 249 + "….jpeg"),
    ],
)
def test_it_keeps_only_a_safe_display_name_of_the_users_file(alice, make_image, name, shown):
    # A plain File keeps the name as given; Django's upload handlers would trim it first.
    outcome = upload_classify(user=alice, file=File(io.BytesIO(make_image()), name=name))

    assert outcome.upload.original_filename == shown
    assert len(outcome.upload.original_filename) <= 255


def test_an_image_deleted_while_being_uploaded_again_is_simply_stored_anew(
    alice, bob, make_image, monkeypatch, inference_calls, django_capture_on_commit_callbacks
):
    data = make_image()
    alices = upload_classify(user=alice, file=as_upload(data)).upload
    real_write = services.storage.save_if_missing
    interfered = []

    def alice_deletes_hers_first(name, content):
        if not interfered:
            interfered.append(True)
            # Bob's request has read the image and its classification; now they go.
            with django_capture_on_commit_callbacks(execute=True):
                services.upload_delete(user=alice, upload_id=alices.pk)
        return real_write(name, content)

    monkeypatch.setattr(services.storage, "save_if_missing", alice_deletes_hers_first)

    bobs = upload_classify(user=bob, file=as_upload(data))

    assert bobs.duplicate is False
    assert list(Upload.objects.all()) == [bobs.upload]
    assert Classification.objects.count() == 1
    assert stored_bytes(media_files()[0]) == data
    assert inference_calls == [1, 1]
