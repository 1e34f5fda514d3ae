"""Image bytes -> upright RGB picture, refusing anything unsafe or unreadable.

Every refusal is an `ImageRejected` subclass with a message a person can act on;
callers map the class to their own error (HTTP status, CLI line).
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from .defaults import DEFAULT_MAX_PIXELS

logger = logging.getLogger(__name__)

# Formats a camera, phone or browser produces. Pillow reads many more (EPS runs
# Ghostscript, for one); an upload service has no business parsing those. Multi-picture
# JPEGs from cameras open through the JPEG plugin and report themselves as "MPO".
ACCEPTED_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF")
ACCEPTED_EXTENSIONS = (".jpg", ".jpeg", ".jpe", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff")
ACCEPTED_CONTENT_TYPES = (
    "image/jpeg",
    "image/png",
    "image/gif",
    "image/webp",
    "image/bmp",
    "image/tiff",
)

# Formats Pillow can decode at a reduced scale. ("MPO" is a multi-picture JPEG.)
DRAFT_FORMATS = ("JPEG", "MPO")

# A damaged file must be refused, never half-decoded into grey.
ImageFile.LOAD_TRUNCATED_IMAGES = False


class ImageRejected(Exception):
    """Base of every reason an image cannot be classified."""

    status = 400  # HTTP; the engine knows no web framework, only the number
    code = "invalid_image"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class EmptyImage(ImageRejected):
    code = "empty_file"


class NotAnImage(ImageRejected):
    status = 415
    code = "unsupported_type"


class CorruptImage(ImageRejected):
    code = "corrupt_image"


class TooManyPixels(ImageRejected):
    code = "too_many_pixels"


@dataclass(frozen=True)
class DecodedImage:
    image: Image.Image  # RGB, EXIF orientation applied; smaller if decoded in draft mode
    width: int  # of the upright image, at full size
    height: int
    format: str  # as Pillow names it: "JPEG", "PNG", ...


def decode_image(
    data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, min_side: int | None = None
) -> DecodedImage:
    """Decode `data`, refusing what cannot or must not be decoded.

    With `min_side`, a JPEG far larger than that is decoded at 1/2, 1/4 or 1/8 scale in
    the DCT domain (Pillow's draft mode), keeping its shorter side at least `min_side`:
    a 12-megapixel photo then costs a fraction of the time and memory. The width and
    height reported stay those of the full picture.
    """
    if not data:
        raise EmptyImage("The file is empty.")
    try:
        image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except UnidentifiedImageError:
        raise NotAnImage(
            "This file is not an image in a supported format "
            "(JPEG, PNG, GIF, WebP, BMP or TIFF)."
        ) from None
    except Image.DecompressionBombError:
        raise TooManyPixels(_too_many_pixels_message(None, None, max_pixels)) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise CorruptImage(f"The image header is damaged ({exc}).") from None

    # The header gives the size before a single pixel is decoded.
    width, height = image.size
    if width * height > max_pixels:
        raise TooManyPixels(_too_many_pixels_message(width, height, max_pixels))
    if width < 1 or height < 1:
        raise CorruptImage("The image has no pixels.")

    image_format = image.format or "unknown"
    if min_side and image_format in DRAFT_FORMATS:
        image.draft(image.mode, (min_side, min_side))
    drafted = image.size
    try:
        image.seek(0)  # animated images: the first frame
        image.load()
    except Image.DecompressionBombError:
        raise TooManyPixels(_too_many_pixels_message(width, height, max_pixels)) from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError) as exc:
        raise CorruptImage(
            f"The image data is damaged or incomplete ({exc}). Try re-saving or re-exporting it."
        ) from None

    rgb = to_rgb(_upright(image))
    # The EXIF orientation turned the picture a quarter if its sides swapped.
    turned = rgb.size != drafted
    full_width, full_height = (height, width) if turned else (width, height)
    return DecodedImage(image=rgb, width=full_width, height=full_height, format=image_format)


def _too_many_pixels_message(width: int | None, height: int | None, max_pixels: int) -> str:
    size = f" ({width} × {height} = {width * height:,} pixels)" if width and height else ""
    return (
        f"The image is too large{size}: at most {max_pixels:,} pixels are accepted. "
        "Scale it down and try again."
    )


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation, so a phone photo taken sideways is classified upright."""
    try:
        return ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, ValueError, TypeError, KeyError, ZeroDivisionError) as exc:
        # Broken EXIF must not cost the user their upload: the pixels are fine.
        logger.warning("Ignoring unreadable EXIF orientation: %s", exc)
        return image


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB; transparency is composited on white."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return _high_depth_to_rgb(image)
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode in ("RGBa", "La", "PA"):
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _high_depth_to_rgb(image: Image.Image) -> Image.Image:
    # Pillow's own convert("L") clips 16-bit values at 255, turning most photos white.
    pixels = np.asarray(image, dtype=np.float64)
    peak = float(pixels.max()) if pixels.size else 0.0
    if image.mode.startswith("I;16") or 255 < peak <= 65535:
        pixels = pixels / 257.0
    elif peak > 65535:
        pixels = pixels * (255.0 / peak)
    elif image.mode == "F" and peak <= 1.0:
        pixels = pixels * 255.0
    grey = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
    return Image.fromarray(grey, mode="L").convert("RGB")
