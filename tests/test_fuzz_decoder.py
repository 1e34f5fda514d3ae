"""Fuzzing the image decoder: random bytes, and valid pictures of every accepted format
damaged by bit flips, overwrites, truncations, deletions and splices. Whatever arrives,
decode_image either refuses it with an ImageRejected (which callers turn into a 4xx) or
returns an RGB picture of positive size; nothing else may escape.

A small budget runs in the normal suite; `FUZZ_EXAMPLES=5000 pytest tests/test_fuzz_decoder.py`
searches longer.
"""

from __future__ import annotations

import io
import os

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from recognition.engine.images import DecodedImage, ImageRejected, decode_image

EXAMPLES = int(os.getenv("FUZZ_EXAMPLES", "150"))
# Small, so a mutated header cannot make one example allocate much.
MAX_PIXELS = 1_000_000

fuzz = settings(
    max_examples=EXAMPLES,
    deadline=None,  # the machine is shared; time is bounded by the example count
    database=None,  # nothing written into the working tree
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _save(image: Image.Image, image_format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


def _seed_images() -> dict[str, bytes]:
    rng = np.random.default_rng(2024)
    rgb = Image.fromarray(rng.integers(0, 256, size=(12, 16, 3), dtype=np.uint8))
    rgba = Image.fromarray(rng.integers(0, 256, size=(12, 16, 4), dtype=np.uint8))
    frames = [rgb.convert("P"), rgb.rotate(90).convert("P")]
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: the EXIF path is exercised too
    return {
        "jpeg": _save(rgb, "JPEG", quality=80, exif=exif.tobytes()),
        "progressive jpeg": _save(rgb, "JPEG", progressive=True),
        "cmyk jpeg": _save(rgb.convert("CMYK"), "JPEG"),
        "png": _save(rgba, "PNG"),
        "palette png": _save(rgb.convert("P"), "PNG", transparency=0),
        "gif": _save(frames[0], "GIF", save_all=True, append_images=frames[1:], loop=0),
        "webp": _save(rgb, "WEBP", quality=70),
        "bmp": _save(rgb, "BMP"),
        "tiff": _save(rgb, "TIFF", compression="tiff_deflate"),
        "16-bit tiff": _save(Image.fromarray(rng.integers(0, 65535, (12, 16), np.uint16)), "TIFF"),
    }


SEEDS = _seed_images()
MAGIC = [
    b"\xff\xd8\xff\xe0",
    b"\x89PNG\r\n\x1a\n",
    b"GIF89a",
    b"RIFF\x00\x00\x00\x00WEBPVP8 ",
    b"BM",
    b"II*\x00",
    b"MM\x00*",
]


def assert_decoded_or_rejected(data: bytes) -> None:
    try:
        decoded = decode_image(data, max_pixels=MAX_PIXELS)
    except ImageRejected as rejection:
        assert rejection.message.strip()
        return
    assert isinstance(decoded, DecodedImage)
    assert decoded.image.mode == "RGB"
    assert decoded.width > 0 and decoded.height > 0
    assert decoded.image.size == (decoded.width, decoded.height)
    assert decoded.width * decoded.height <= MAX_PIXELS


MUTATIONS = ["flip", "overwrite", "truncate", "delete", "splice", "repeat"]


@st.composite
def mutated_images(draw) -> bytes:
    data = bytearray(SEEDS[draw(st.sampled_from(sorted(SEEDS)))])
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(MUTATIONS))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=16))
            data[at : at + len(chunk)] = chunk
        elif kind == "truncate":
            del data[at:]
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 64))]
        elif kind == "splice":  # a piece of another format's file
            other = SEEDS[draw(st.sampled_from(sorted(SEEDS)))]
            start = draw(st.integers(0, len(other) - 1))
            data[at:at] = other[start : start + draw(st.integers(1, 256))]
        elif kind == "repeat":
            data[at:at] = data[at : at + draw(st.integers(1, 64))] * draw(st.integers(2, 8))
    return bytes(data)


def test_every_seed_picture_decodes_to_rgb():
    for name, data in SEEDS.items():
        decoded = decode_image(data, max_pixels=MAX_PIXELS)
        assert decoded.image.mode == "RGB", name


@fuzz
@given(st.binary(max_size=4096))
def test_random_bytes_are_decoded_or_rejected_never_crash(data):
    assert_decoded_or_rejected(data)


@fuzz
@given(st.sampled_from(MAGIC), st.binary(max_size=2048))
def test_random_bytes_behind_a_real_magic_number_are_decoded_or_rejected(magic, rest):
    assert_decoded_or_rejected(magic + rest)


@fuzz
@given(mutated_images())
def test_damaged_pictures_of_every_format_are_decoded_or_rejected(data):
    assert_decoded_or_rejected(data)
