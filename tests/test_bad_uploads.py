"""Bad uploads are refused with a specific JSON error and leave nothing behind."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test.client import BOUNDARY, MULTIPART_CONTENT, FakePayload, encode_multipart

from recognition.models import Upload
from tests.web_fixtures import (
    as_upload,
    assert_nothing_written,
    media_files,
    patch_every_classifier,
    png_claiming_size,
)

pytestmark = pytest.mark.django_db

URL = "/api/v1/classifications/"


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"].strip()
    return error


def test_it_rejects_an_empty_file_and_writes_nothing(alice_api):
    response = alice_api.post(URL, {"image": as_upload(b"", "empty.jpg")}, format="multipart")

    assert_error(response, 400, "empty_file")
    assert_nothing_written()


def test_it_rejects_a_text_file_as_unsupported_and_writes_nothing(alice_api):
    text = SimpleUploadedFile("notes.jpg", b"just some text, not a picture\n", content_type="image/jpeg")

    response = alice_api.post(URL, {"image": text}, format="multipart")

    error = assert_error(response, 415, "unsupported_type")
    assert "JPEG" in error["message"]
    assert_nothing_written()


def test_it_rejects_a_truncated_jpeg_as_corrupt_and_writes_nothing(alice_api, make_image):
    data = make_image(size=(256, 256))

    response = alice_api.post(URL, {"image": as_upload(data[: len(data) // 2])}, format="multipart")

    assert_error(response, 400, "corrupt_image")
    assert_nothing_written()


def test_it_rejects_an_image_with_too_many_pixels_and_writes_nothing(alice_api):
    bomb = as_upload(png_claiming_size(50_000, 50_000), "bomb.png", "image/png")

    response = alice_api.post(URL, {"image": bomb}, format="multipart")

    error = assert_error(response, 400, "too_many_pixels")
    assert "pixels" in error["message"]
    assert_nothing_written()


def test_it_rejects_a_file_over_the_byte_limit_and_writes_nothing(alice_api, make_image, settings):
    data = make_image()
    settings.RECOGNITION_MAX_UPLOAD_BYTES = len(data) - 1

    response = alice_api.post(URL, {"image": as_upload(data)}, format="multipart")

    error = assert_error(response, 413, "too_large")
    assert "too large" in error["message"]
    assert_nothing_written()


class CountingPayload(FakePayload):
    """A request body (wsgi.input) that counts the bytes the server reads from it."""

    def __init__(self, content: bytes):
        super().__init__(content)
        self.bytes_read = 0

    def read(self, size: int = -1, /) -> bytes:
        chunk = super().read(size)
        self.bytes_read += len(chunk)
        return chunk

    def readline(self, size: int = -1, /) -> bytes:
        line = super().readline(size)
        self.bytes_read += len(line)
        return line


def _multipart_upload(data: bytes) -> tuple[bytes, dict]:
    """An upload form's body with `data` as its image, and the request keys to send it."""
    body = encode_multipart(BOUNDARY, {"image": as_upload(data)})
    payload = CountingPayload(body)
    return body, {"content_type": MULTIPART_CONTENT, "wsgi.input": payload}


def test_an_oversized_request_is_refused_before_its_body_is_read(alice_api, make_image, settings):
    limit = settings.RECOGNITION_MAX_UPLOAD_BYTES = 20_000
    big, big_request = _multipart_upload(b"x" * (limit + 64 * 1024 + 1))
    small, small_request = _multipart_upload(make_image())

    refused = alice_api.post(URL, big, **big_request)
    accepted = alice_api.post(URL, small, **small_request)

    assert_error(refused, 413, "too_large")
    assert big_request["wsgi.input"].bytes_read == 0
    # The same kind of body is read when it is accepted: the count sees real reads.
    assert accepted.status_code == 201
    assert small_request["wsgi.input"].bytes_read == len(small)
    assert Upload.objects.count() == 1


def test_an_oversized_page_request_gets_a_readable_page(alice_client, settings):
    settings.RECOGNITION_MAX_UPLOAD_BYTES = 1000
    body = b"x" * (1000 + 64 * 1024 + 1)

    response = alice_client.post("/", body, content_type="application/octet-stream")

    assert response.status_code == 413
    assert response["Content-Type"].startswith("text/html")
    assert b"too large" in response.content


def test_it_asks_for_the_image_field_when_the_file_comes_under_another_name(alice_api, make_image):
    response = alice_api.post(URL, {"file": as_upload(make_image())}, format="multipart")

    error = assert_error(response, 400, "missing_field")
    assert error["message"].startswith("image:")
    assert_nothing_written()


def test_it_refuses_two_files_in_one_request(alice_api, make_image):
    files = [as_upload(make_image(), "a.jpg"), as_upload(make_image(), "b.jpg")]

    response = alice_api.post(URL, {"image": files}, format="multipart")

    error = assert_error(response, 400, "invalid_input")
    assert "one image per request" in error["message"]
    assert_nothing_written()


def test_it_refuses_a_text_value_instead_of_a_file(alice_api):
    response = alice_api.post(URL, {"image": "cat.jpg"}, format="multipart")

    assert_error(response, 400, "invalid_input")
    assert_nothing_written()


@pytest.mark.parametrize("top_k", ["0", "11", "three", "-1"])
def test_it_refuses_a_top_k_outside_one_to_ten(alice_api, make_image, top_k):
    response = alice_api.post(URL, {"image": as_upload(make_image()), "top_k": top_k}, format="multipart")

    error = assert_error(response, 400, "invalid_input")
    assert error["message"].startswith("top_k:")
    assert_nothing_written()


def test_it_refuses_a_json_body(alice_api):
    response = alice_api.post(URL, {"image": "aGVsbG8="}, format="json")

    assert_error(response, 415, "unsupported_media_type")
    assert_nothing_written()


def test_it_answers_503_when_no_model_is_prepared_and_writes_nothing(alice_api, make_image, no_model):
    response = alice_api.post(URL, {"image": as_upload(make_image())}, format="multipart")

    error = assert_error(response, 503, "model_unavailable")
    assert "prepare_model" in error["message"]
    assert_nothing_written()


def test_a_failing_model_is_a_503_not_a_500(alice_api, make_image, monkeypatch):
    from recognition.engine.classifier import ModelUnavailable

    def unavailable(real_classify):
        def classify(self, images, top_k=3):
            raise ModelUnavailable("The model artifact is missing. Run `python manage.py prepare_model`.")

        return classify

    patch_every_classifier(monkeypatch, unavailable)

    response = alice_api.post(URL, {"image": as_upload(make_image())}, format="multipart")

    assert_error(response, 503, "model_unavailable")
    assert_nothing_written()


def test_a_bad_file_on_the_upload_page_shows_its_own_message_and_the_good_one_its_result(
    alice_client, make_image
):
    files = [
        as_upload(b"not an image", "notes.txt", "text/plain"),
        as_upload(make_image(), "good.jpg"),
    ]

    response = alice_client.post("/", {"images": files})

    assert response.status_code == 200
    html = response.content.decode()
    assert "notes.txt" in html
    assert "not an image in a supported format" in html
    assert "good.jpg" in html
    assert Upload.objects.count() == 1
    assert len(media_files()) == 1


@pytest.mark.parametrize(
    "data, status, message",
    [
        (b"", 400, "The file is empty."),
        (b"hello", 415, "not an image"),
        (png_claiming_size(50_000, 50_000), 400, "too large"),
    ],
)
def test_a_single_bad_file_on_the_upload_page_answers_with_its_status(alice_client, data, status, message):
    response = alice_client.post("/", {"images": as_upload(data, "bad.png", "image/png")})

    assert response.status_code == status
    assert message in response.content.decode()
    assert_nothing_written()
