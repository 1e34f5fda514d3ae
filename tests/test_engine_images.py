"""decode_image: every bad input gets its own exception; odd but valid pictures decode
to the RGB picture a person would see."""

import io
import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from recognition.engine.images import (
    CorruptImage,
    EmptyImage,
    NotAnImage,
    TooManyPixels,
    decode_image,
)
from recognition.engine.classifier import Classifier
from tests.helpers import REPO, noise_picture



def _encode(image: Image.Image, image_format: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **params)
    return buffer.getvalue()


def _png_claiming(width: int, height: int) -> bytes:
    """A real 8×8 PNG whose header says it is width × height, with a valid header CRC,
    so only the pixel count can give it away."""
    data = bytearray(_encode(noise_picture(0, (8, 8)), "PNG"))
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def test_it_rejects_empty_bytes_as_an_empty_file():
    with pytest.raises(EmptyImage):
        decode_image(b"")


def test_it_rejects_a_text_file_as_not_an_image():
    with pytest.raises(NotAnImage):
        decode_image(b"name,score\nalice,3\nbob,4\n")


@pytest.mark.parametrize(
    "data",
    [
        b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
        b'<rect width="10" height="10" fill="red"/></svg>',
        b"<!DOCTYPE html><html><body><img src=x onerror=alert(1)></body></html>",
        b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n",
    ],
    ids=["svg", "html", "pdf"],
)
def test_it_rejects_svg_html_and_pdf_as_not_an_image(data):
    with pytest.raises(NotAnImage):
        decode_image(data)


def test_it_rejects_a_format_pillow_reads_but_the_service_does_not_accept():
    pcx = _encode(noise_picture(0, (16, 16)), "PCX")
    assert Image.open(io.BytesIO(pcx)).format == "PCX"  # Pillow itself would decode it

    with pytest.raises(NotAnImage):
        decode_image(pcx)


def test_it_rejects_a_truncated_jpeg_as_corrupt():
    whole = _encode(noise_picture(0, (256, 256)), "JPEG", quality=95)
    decode_image(whole)  # the uncut file is fine

    with pytest.raises(CorruptImage):
        decode_image(whole[: len(whole) // 2])


def test_it_rejects_a_png_whose_header_claims_fifty_thousand_pixels_square():
    with pytest.raises(TooManyPixels):
        decode_image(_png_claiming(50_000, 50_000))


def test_it_rejects_a_picture_just_over_the_configured_pixel_limit():
    with pytest.raises(TooManyPixels) as caught:
        decode_image(_encode(noise_picture(0, (101, 100)), "PNG"), max_pixels=10_000)

    assert "101 × 100" in caught.value.message


def test_refusing_a_huge_header_uses_almost_no_memory(tmp_path):
    """Decoding 50 000 × 50 000 RGB would take 7.5 GB (10 GB as Pillow lays it out).
    Measured in a fresh process; its address space is also capped at 1 GB above what it
    has mapped, so an attempt to allocate the pixels fails outright."""
    path = tmp_path / "huge.png"
    path.write_bytes(_png_claiming(50_000, 50_000))
    script = """
import json, resource, sys
from recognition.engine.images import decode_image
data = open(sys.argv[1], "rb").read()
resource.setrlimit(
    resource.RLIMIT_AS, ((status_kb("VmSize") + 1024 * 1024) * 1024, resource.RLIM_INFINITY)
)
baseline = start_measuring()
try:
    decode_image(data)
    outcome = "decoded"
except Exception as exc:
    outcome = type(exc).__name__
print(json.dumps({"outcome": outcome, "peak_growth_kb": peak_growth_kb(baseline)}))
"""
    report = _run_in_a_fresh_process(script, path)

    assert report["outcome"] == "TooManyPixels"
    # Reading the header needs kilobytes; 50 MB is a hundred and fifty times less than
    # the pixels and still far above what Python's allocator may round up to.
    assert report["peak_growth_kb"] < 50 * 1024


# Peak memory of the fresh process itself. Not ru_maxrss: Linux carries a process's peak
# over exec into the new program, so a child of this pytest process (which holds models
# and hundreds of MB) would start at the parent's peak and see no growth, whatever it
# allocated. VmHWM belongs to the new program's own memory map; writing 5 to clear_refs
# resets it to the present size, so the start-up's own peak is not counted either.
MEMORY_PRELUDE = """
def status_kb(key):
    with open("/proc/self/status") as status:
        return int(next(l for l in status if l.startswith(key + ":")).split()[1])

def start_measuring():
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:  # not allowed here: growth is then counted above the start-up peak
        pass
    return status_kb("VmHWM")

def peak_growth_kb(baseline):
    return status_kb("VmHWM") - baseline
"""

# Only a hung child takes this long: starting Python with NumPy and Pillow and decoding
# one picture takes a second or two on a busy machine.
FRESH_PROCESS_TIMEOUT = 300


def _run_in_a_fresh_process(script: str, path: Path, *args: str) -> dict:
    """Run `script` (with MEMORY_PRELUDE's helpers) with `path` and `args` as its
    arguments; it prints one JSON object."""
    completed = subprocess.run(
        [sys.executable, "-c", MEMORY_PRELUDE + script, str(path), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=FRESH_PROCESS_TIMEOUT,
        check=True,
    )
    return json.loads(completed.stdout)


@pytest.mark.parametrize("size", [(1, 1), (10_000, 20)], ids=["1x1", "10000x20-strip"])
def test_a_tiny_or_extremely_elongated_picture_is_valid_and_gets_results(
    size, prepared_models_dir
):
    decoded = decode_image(_encode(noise_picture(0, size), "PNG"))

    (result,) = Classifier(prepared_models_dir).classify([decoded.image], top_k=3)

    assert (decoded.width, decoded.height) == size
    assert len(result.predictions) == 3
    assert all(0.0 < p.score <= 1.0 for p in result.predictions)


def test_only_the_first_frame_of_an_animated_gif_is_used():
    red = Image.new("RGB", (8, 8), (255, 0, 0))
    blue = Image.new("RGB", (8, 8), (0, 0, 255))
    gif = _encode(red, "GIF", save_all=True, append_images=[blue], duration=100, loop=0)
    animation = Image.open(io.BytesIO(gif))
    animation.seek(1)
    assert animation.n_frames == 2 and animation.convert("RGB").getpixel((0, 0)) == (0, 0, 255)

    decoded = decode_image(gif)

    assert decoded.format == "GIF"
    assert decoded.image.getpixel((4, 4)) == (255, 0, 0)


def test_transparency_is_composited_on_white():
    rgba = Image.new("RGBA", (3, 1))
    rgba.putdata([(0, 0, 0, 0), (0, 0, 0, 128), (10, 20, 30, 255)])

    decoded = decode_image(_encode(rgba, "PNG"))

    assert decoded.image.mode == "RGB"
    assert decoded.image.getpixel((0, 0)) == (255, 255, 255)
    assert all(126 <= channel <= 128 for channel in decoded.image.getpixel((1, 0)))
    assert decoded.image.getpixel((2, 0)) == (10, 20, 30)


def test_a_palette_picture_with_a_transparent_index_is_composited_on_white():
    palette = Image.new("P", (2, 1))
    palette.putpalette([0, 0, 0, 200, 0, 0] + [0, 0, 0] * 254)
    palette.putdata([0, 1])

    decoded = decode_image(_encode(palette, "PNG", transparency=0))

    assert decoded.image.getpixel((0, 0)) == (255, 255, 255)
    assert decoded.image.getpixel((1, 0)) == (200, 0, 0)


def test_sixteen_bit_greyscale_is_scaled_to_eight_bits_not_clipped():
    levels = np.array([[0, 32_768, 65_535]], dtype=np.uint16)
    png = _encode(Image.fromarray(levels), "PNG")
    assert Image.open(io.BytesIO(png)).mode.startswith("I")  # stored with 16 bits

    decoded = decode_image(png)

    black, middle, white = (decoded.image.getpixel((x, 0)) for x in range(3))
    assert black == (0, 0, 0)
    assert middle[0] in (127, 128) and len(set(middle)) == 1
    assert white == (255, 255, 255)


def _smooth(width: int, height: int) -> Image.Image:
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([x * 255 // width, y * 255 // height, (x + y) * 255 // (width + height)], -1)
    return Image.fromarray(pixels.astype(np.uint8))


def test_a_large_jpeg_decodes_smaller_but_reports_its_full_size():
    data = _encode(_smooth(4000, 3000), "JPEG", quality=90)

    decoded = decode_image(data, min_side=512)

    assert (decoded.width, decoded.height) == (4000, 3000)
    assert decoded.image.size == (1000, 750)  # 1/4 scale: 1/8 would cut below 512
    assert decoded.format == "JPEG"


def test_a_sideways_large_jpeg_reports_its_upright_full_size():
    exif = Image.Exif()
    exif[0x0112] = 6  # turn 90° clockwise to view
    data = _encode(_smooth(3000, 2000), "JPEG", quality=90, exif=exif.tobytes())

    decoded = decode_image(data, min_side=512)

    assert (decoded.width, decoded.height) == (2000, 3000)
    assert decoded.image.size == (1000, 1500)  # half scale: a quarter would cut below 512


def test_reduced_decoding_keeps_the_pictures_content():
    picture = _smooth(2400, 1800)
    data = _encode(picture, "JPEG", quality=95)

    decoded = decode_image(data, min_side=512).image

    expected = picture.resize(decoded.size, Image.Resampling.BOX)
    difference = np.abs(np.asarray(decoded, dtype=int) - np.asarray(expected, dtype=int))
    assert difference.mean() < 2


def test_a_jpeg_not_far_larger_than_needed_and_a_png_decode_at_full_size():
    jpeg = decode_image(_encode(_smooth(1000, 750), "JPEG"), min_side=512)
    png = decode_image(_encode(_smooth(4000, 3000), "PNG"), min_side=512)

    assert jpeg.image.size == (1000, 750)
    assert png.image.size == (4000, 3000)


def test_a_twelve_megapixel_jpeg_decodes_in_a_few_megabytes(tmp_path):
    """A full decode of 4000 × 3000 holds at least the whole picture: 48 MB as Pillow
    stores RGB, four bytes a pixel (about 95 MB at its peak, measured). The service's
    reduced decode holds a sixteenth of it (about 8 MB at its peak, measured)."""
    path = tmp_path / "camera.jpg"
    path.write_bytes(_encode(noise_picture(0, (4000, 3000)), "JPEG", quality=90))
    script = """
import json, sys
from recognition.engine.images import decode_image
data = open(sys.argv[1], "rb").read()
baseline = start_measuring()
decoded = decode_image(data, min_side=int(sys.argv[2]) or None)
print(json.dumps({"size": decoded.image.size, "peak_growth_kb": peak_growth_kb(baseline)}))
"""
    reduced = _run_in_a_fresh_process(script, path, "512")
    full = _run_in_a_fresh_process(script, path, "0")

    assert reduced["size"] == [1000, 750]
    whole_picture_kb = 4000 * 3000 * 4 // 1024
    # The measurement sees a whole picture when one is decoded ...
    assert full["peak_growth_kb"] > whole_picture_kb
    # ... and the reduced decode stays under half of one: it never held the full picture,
    # with three times the room it needs for allocator rounding and Pillow's versions.
    assert reduced["peak_growth_kb"] < whole_picture_kb // 2
