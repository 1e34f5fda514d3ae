"""Hostile, broken and unusual files through both doors, the API and the upload page.

Every file here is made in memory. A refused file gets its own status and message, and
leaves no row and no file behind; the server keeps answering. Valid but unusual pictures
(16-bit TIFF, CMYK JPEG, a GIF with 10 000 frames, a 1 MB EXIF block) are classified.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
from django.test import Client, RequestFactory
from django.test.client import ClientHandler
from PIL import GifImagePlugin, Image

from recognition.models import MAX_FILENAME_LENGTH, Upload
from tests.web_fixtures import (
    as_upload,
    assert_nothing_written,
    image_bytes,
    media_files,
    png_claiming_size,
)

pytestmark = pytest.mark.django_db

API = "/api/v1/classifications/"
PAGE = "/"
CHANNELS = ["api", "page"]


# --- Generated files --------------------------------------------------------------


def truncated_jpeg() -> bytes:
    data = image_bytes("JPEG", (256, 256), seed=7)
    return data[: len(data) // 2]


def jpeg_with_corrupt_huffman_data() -> bytes:
    """A whole JPEG, markers intact, whose entropy-coded scan data is overwritten: every
    37th byte after the start-of-scan header becomes 0xFF, an invalid marker mid-scan."""
    data = bytearray(image_bytes("JPEG", (256, 256), seed=8))
    sos = data.index(b"\xff\xda")
    scan_start = sos + 2 + int.from_bytes(data[sos + 2 : sos + 4], "big")
    for index in range(scan_start + 16, len(data) - 16, 37):
        data[index] = 0xFF
    assert data.endswith(b"\xff\xd9")  # still ends properly: only the Huffman data is bad
    return bytes(data)


def gif_with_frames(count: int) -> bytes:
    """A 2×2 GIF whose one frame is repeated `count` times: tiny to make, 10 000 frames."""
    buffer = io.BytesIO()
    Image.new("P", (2, 2), 1).save(buffer, "GIF")
    single = buffer.getvalue()
    packed = single[10]
    frames_start = 13 + (3 * 2 ** ((packed & 7) + 1) if packed & 0x80 else 0)
    return single[:frames_start] + single[frames_start:-1] * count + b";"


def sixteen_bit_tiff() -> bytes:
    pixels = np.linspace(0, 65535, 40 * 30).astype(np.uint16).reshape(30, 40)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "TIFF")
    assert Image.open(io.BytesIO(buffer.getvalue())).mode == "I;16"
    return buffer.getvalue()


def cmyk_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("CMYK", (40, 30), (10, 200, 30, 5)).save(buffer, "JPEG")
    return buffer.getvalue()


def png_with_a_megabyte_of_exif() -> bytes:
    """JPEG caps an EXIF segment at 64 KB; PNG's eXIf chunk carries 1 MB, as does WebP."""
    exif = Image.Exif()
    exif[0x010E] = "x" * 1_000_000  # ImageDescription
    exif[0x0112] = 6  # Orientation: rotate 90°, so the EXIF is really read
    pixels = np.random.default_rng(9).integers(0, 256, size=(48, 64, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG", exif=exif.tobytes())
    return buffer.getvalue()


SVG = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
HTML = b"<!doctype html><html><body><script>alert(document.cookie)</script></body></html>"
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


@dataclass(frozen=True)
class Refusal:
    make: Callable[[], bytes]
    status: int
    code: str
    message: str  # a fragment of what the user reads


REFUSALS = {
    "text": Refusal(lambda: b"just some notes\n", 415, "unsupported_type", "not an image"),
    "html": Refusal(lambda: HTML, 415, "unsupported_type", "not an image"),
    "svg": Refusal(lambda: SVG, 415, "unsupported_type", "not an image"),
    "pdf": Refusal(lambda: PDF, 415, "unsupported_type", "not an image"),
    "truncated jpeg": Refusal(truncated_jpeg, 400, "corrupt_image", "damaged or incomplete"),
    "corrupt huffman data": Refusal(
        jpeg_with_corrupt_huffman_data, 400, "corrupt_image", "damaged or incomplete"
    ),
    "png bomb": Refusal(
        lambda: png_claiming_size(100_000, 100_000), 400, "too_many_pixels", "too large"
    ),
}

UNUSUAL_BUT_VALID = {
    "16-bit tiff": (sixteen_bit_tiff, "TIFF"),
    "cmyk jpeg": (cmyk_jpeg, "JPEG"),
    "gif with 10 000 frames": (lambda: gif_with_frames(10_000), "GIF"),
    "png with 1 MB of exif": (png_with_a_megabyte_of_exif, "PNG"),
}


# --- Helpers ----------------------------------------------------------------------


@pytest.fixture
def send(alice_api, alice_client):
    """POST one file as `photo.jpg` through the API or the upload page."""

    def post(channel: str, data: bytes, name: str = "photo.jpg"):
        file = as_upload(data, name)
        if channel == "api":
            return alice_api.post(API, {"image": file}, format="multipart")
        return alice_client.post(PAGE, {"images": file})

    return post


def assert_still_serving() -> None:
    assert Client().get("/api/v1/health/").status_code == 200


def message_of(channel: str, response) -> str:
    if channel == "api":
        assert response["Content-Type"] == "application/json"
        return response.json()["error"]["message"]
    assert response["Content-Type"].startswith("text/html")
    return response.content.decode()


def multipart(field: str, filename: bytes, data: bytes) -> tuple[bytes, str]:
    """A hand-made multipart body: the test client would strip directories from the name."""
    boundary = b"hostile-boundary-7d1e"
    body = b"".join(
        [
            b"--" + boundary + b"\r\n",
            b'Content-Disposition: form-data; name="' + field.encode() + b'"; filename="',
            filename,
            b'"\r\nContent-Type: image/jpeg\r\n\r\n',
            data,
            b"\r\n--" + boundary + b"--\r\n",
        ]
    )
    return body, f"multipart/form-data; boundary={boundary.decode()}"


# --- Refused files ----------------------------------------------------------------


@pytest.mark.parametrize("channel", CHANNELS)
@pytest.mark.parametrize("kind", list(REFUSALS))
def test_a_hostile_or_broken_file_is_refused_with_its_own_status_and_message(send, channel, kind):
    refusal = REFUSALS[kind]

    response = send(channel, refusal.make())

    assert response.status_code == refusal.status
    assert refusal.message in message_of(channel, response)
    if channel == "api":
        assert response.json()["error"]["code"] == refusal.code
    assert_nothing_written()
    assert_still_serving()


def test_an_empty_api_request_asks_for_the_image(alice_api):
    response = alice_api.post(API)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "missing_field"
    assert error["message"].startswith("image:")
    assert_nothing_written()


def test_an_empty_page_submission_asks_for_an_image(alice_client):
    response = alice_client.post(PAGE)

    assert response.status_code == 400
    assert "Choose at least one image." in response.content.decode()
    assert_nothing_written()


def test_a_page_submission_with_the_file_under_another_name_asks_for_an_image(alice_client):
    response = alice_client.post(PAGE, {"picture": as_upload(image_bytes())})

    assert response.status_code == 400
    assert "Choose at least one image." in response.content.decode()
    assert_nothing_written()


def test_an_api_request_with_only_top_k_asks_for_the_image(alice_api):
    response = alice_api.post(API, {"top_k": "3"}, format="multipart")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "missing_field"
    assert_nothing_written()


def test_two_files_in_the_api_field_are_refused_while_the_page_takes_both_by_design(
    alice_api, alice_client
):
    files = [as_upload(image_bytes(seed=21), "a.jpg"), as_upload(image_bytes(seed=22), "b.jpg")]

    response = alice_api.post(API, {"image": files}, format="multipart")

    assert response.status_code == 400
    assert "one image per request" in response.json()["error"]["message"]
    assert_nothing_written()
    # The upload page is the several-files door: each file gets its own result.
    files = [as_upload(image_bytes(seed=21), "a.jpg"), as_upload(image_bytes(seed=22), "b.jpg")]
    assert alice_client.post(PAGE, {"images": files}).status_code == 200
    assert Upload.objects.count() == 2


@pytest.mark.parametrize("top_k", ["0", "-1", "10000", "abc"])
def test_a_top_k_that_is_not_one_to_ten_is_refused_with_a_message(alice_api, top_k):
    response = alice_api.post(
        API, {"image": as_upload(image_bytes()), "top_k": top_k}, format="multipart"
    )

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    assert error["message"].startswith("top_k: ")
    assert_nothing_written()


# --- Oversized requests are refused unread ----------------------------------------


class ExplodingInput:
    """A WSGI input stream that fails the test if anyone reads it."""

    def __init__(self) -> None:
        self.reads = 0

    def read(self, *args: object) -> bytes:
        self.reads += 1
        raise AssertionError("the request body was read")

    readline = read


@pytest.mark.parametrize("channel, path", [("api", API), ("page", PAGE)])
def test_a_request_over_the_byte_limit_is_refused_without_reading_its_body(
    alice, channel, path, settings
):
    settings.RECOGNITION_MAX_UPLOAD_BYTES = 2 * 1024 * 1024
    stream = ExplodingInput()
    environ = RequestFactory()._base_environ(
        REQUEST_METHOD="POST",
        PATH_INFO=path,
        CONTENT_TYPE="multipart/form-data; boundary=x",
        CONTENT_LENGTH=str(50 * 1024 * 1024),
        **{"wsgi.input": stream},
    )

    # The test client's own handler, minus its payload: it leaves the DB connection open.
    response = ClientHandler()(environ)

    assert response.status_code == 413
    body = response.content
    assert b"too large" in body
    assert b"at most 2.0" in body  # the limit, as people read it: 2.0 MB
    assert stream.reads == 0
    assert_nothing_written()


# --- Valid but unusual pictures ---------------------------------------------------


@pytest.mark.parametrize("channel", CHANNELS)
@pytest.mark.parametrize("kind", list(UNUSUAL_BUT_VALID))
def test_an_unusual_but_valid_picture_is_classified(send, channel, kind):
    make, image_format = UNUSUAL_BUT_VALID[kind]

    # What such a file costs is asserted below by counting work, not by a clock: see
    # the test that only the first of ten thousand GIF frames is decoded.
    response = send(channel, make())

    upload = Upload.objects.get()
    assert upload.stored_image.format == image_format
    assert upload.classification.predictions.count() > 0
    if channel == "api":
        assert response.status_code == 201
        assert len(response.json()["predictions"]) == 3
    else:
        assert response.status_code == 200
        assert upload.classification.top_label in response.content.decode()
    assert len(media_files()) == 1


@pytest.mark.parametrize("channel", CHANNELS)
def test_only_the_first_of_ten_thousand_gif_frames_is_decoded(send, channel, monkeypatch):
    # The GIF reader's own step to a frame: every frame read (or skipped over, as
    # counting the frames does) passes through it. These frames are tiny, so walking all
    # 10 000 costs about a second, which no clock on a busy machine could tell from a
    # slow upload; the count tells at once.
    frames: list[int] = []
    real_seek = GifImagePlugin.GifImageFile._seek

    def counting_seek(self, frame, *args, **kwargs):
        frames.append(frame)
        return real_seek(self, frame, *args, **kwargs)

    monkeypatch.setattr(GifImagePlugin.GifImageFile, "_seek", counting_seek)

    response = send(channel, gif_with_frames(10_000), "anim.gif")

    assert response.status_code in (200, 201)
    assert Upload.objects.get().stored_image.format == "GIF"
    assert frames and set(frames) == {0}


def test_a_picture_with_a_megabyte_of_exif_is_turned_upright_by_it(alice_api):
    response = alice_api.post(
        API, {"image": as_upload(png_with_a_megabyte_of_exif(), "exif.png")}, format="multipart"
    )

    assert response.status_code == 201
    assert (response.json()["image"]["width"], response.json()["image"]["height"]) == (48, 64)


# --- Hostile filenames ------------------------------------------------------------

HOSTILE_NAMES = {
    "path traversal": ("../../etc/passwd.jpg".encode(), "passwd.jpg"),
    "windows traversal": (b"..\\..\\windows\\win.ini.jpg", "win.ini.jpg"),
    "nul byte": (b"evil\x00.php.jpg", "evil.php.jpg"),
    "nine hundred characters": (b"a" * 896 + b".jpg", None),
    "rtl override": ("photo\u202egpj.exe".encode(), "photogpj.exe"),
}


@pytest.mark.parametrize("channel, field, path", [("api", "image", API), ("page", "images", PAGE)])
@pytest.mark.parametrize("case", list(HOSTILE_NAMES))
def test_a_hostile_filename_is_stored_sanitised_and_never_used_as_a_path(
    alice_api, alice_client, tmp_path, channel, field, path, case
):
    raw_name, shown = HOSTILE_NAMES[case]
    body, content_type = multipart(field, raw_name, image_bytes(seed=31))
    client = alice_api if channel == "api" else alice_client

    response = client.generic("POST", path, body, content_type=content_type)

    assert response.status_code in (200, 201)
    stored = Upload.objects.get().original_filename
    assert "/" not in stored and "\\" not in stored
    assert "\x00" not in stored and "\u202e" not in stored
    assert len(stored) <= MAX_FILENAME_LENGTH
    if shown is not None:
        assert stored == shown
    else:  # shortened (by Django's parser or ours), keeping the extension
        assert len(stored) < 900 and stored.endswith(".jpg")
    if channel == "api":
        assert response.json()["filename"] == stored
    # The file lives under its hash, inside the storage, whatever it was called.
    [file] = media_files()
    sha256 = Upload.objects.get().stored_image.sha256
    assert file == f"images/{sha256[:2]}/{sha256[2:4]}/{sha256}.jpg"
    assert not [p for p in tmp_path.parent.rglob("*passwd*")]
    assert not [p for p in tmp_path.parent.rglob("*win.ini*")]


@pytest.mark.parametrize("channel, field, path", [("api", "image", API), ("page", "images", PAGE)])
def test_a_thousand_character_filename_is_refused_as_a_malformed_request(
    alice_api, alice_client, channel, field, path
):
    # Django caps a multipart part's headers at 1 KB, and the name is in them.
    body, content_type = multipart(field, b"a" * 996 + b".jpg", image_bytes(seed=32))
    client = alice_api if channel == "api" else alice_client

    response = client.generic("POST", path, body, content_type=content_type)

    assert response.status_code == 400
    if channel == "api":
        assert response.json()["error"]["code"] == "malformed_request"
        assert "header size" in response.json()["error"]["message"]
    else:
        assert "The server could not understand that request" in response.content.decode()
    assert_nothing_written()
