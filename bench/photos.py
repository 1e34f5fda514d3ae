"""Pictures for the agreement measurements (draft-mode decoding, int8): real photos from
installed packages, augmented copies of them, and synthetic pictures, all as JPEG bytes.

Nothing is downloaded and nothing is committed: the real photos ship with matplotlib
and scikit-image, and the rest are made from them or from seeded noise.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
import skimage
from PIL import Image, ImageEnhance, ImageFilter

from recognition.engine.quantize import draw_shapes

REAL_PHOTOS: dict[str, tuple[Path, frozenset[str]]] = {
    "grace_hopper.jpg": (
        Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg",
        frozenset({"military uniform"}),
    ),
    "chelsea.png": (
        Path(skimage.data_dir) / "chelsea.png",
        frozenset({"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}),
    ),
    "coffee.png": (Path(skimage.data_dir) / "coffee.png", frozenset({"espresso"})),
    "rocket.jpg": (
        Path(skimage.data_dir) / "rocket.jpg",
        frozenset({"missile", "projectile", "space shuttle"}),
    ),
}


@dataclass(frozen=True)
class Picture:
    name: str
    kind: str  # "real", "augmented" or "synthetic"
    jpeg: bytes
    size: tuple[int, int]


def real_pictures() -> list[Picture]:
    """The four photos as they ship, re-encoded as JPEG where they are PNG."""
    pictures = []
    for name, (path, _) in REAL_PHOTOS.items():
        image = Image.open(path).convert("RGB")
        data = path.read_bytes() if path.suffix == ".jpg" else _jpeg(image, 92)
        pictures.append(Picture(name, "real", data, image.size))
    return pictures


def varied_pictures(count: int, *, min_side: int, max_side: int, seed: int = 0) -> Iterator[Picture]:
    """`count` pictures whose shorter side lies in [min_side, max_side]: half augmented
    real photos (crop, mirror, small turn, light and colour changes, blur or grain,
    rescaled), half synthetic (textures, shapes, gradients with noise)."""
    rng = np.random.default_rng(seed)
    sources = [Image.open(path).convert("RGB") for path, _ in REAL_PHOTOS.values()]
    names = list(REAL_PHOTOS)
    for i in range(count):
        short = int(rng.integers(min_side, max_side + 1))
        aspect = float(rng.choice([1.0, 4 / 3, 3 / 2, 16 / 9]))
        portrait = bool(rng.random() < 0.3)
        long = int(short * aspect)
        size = (short, long) if portrait else (long, short)
        if i % 2 == 0:
            k = int(rng.integers(len(sources)))
            image = _augmented(sources[k], size, rng)
            name, kind = f"{names[k]}#{i}", "augmented"
        else:
            image = _synthetic(size, rng)
            name, kind = f"synthetic#{i}", "synthetic"
        yield Picture(name, kind, _jpeg(image, int(rng.integers(70, 96))), image.size)


def _augmented(source: Image.Image, size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    width, height = source.size
    keep = rng.uniform(0.6, 1.0)
    crop_w, crop_h = int(width * keep), int(height * keep)
    left = int(rng.integers(0, width - crop_w + 1))
    top = int(rng.integers(0, height - crop_h + 1))
    image = source.crop((left, top, left + crop_w, top + crop_h))
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    image = image.rotate(float(rng.uniform(-12, 12)), resample=Image.Resampling.BICUBIC)
    image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.7, 1.3))
    image = ImageEnhance.Contrast(image).enhance(rng.uniform(0.7, 1.3))
    image = ImageEnhance.Color(image).enhance(rng.uniform(0.6, 1.4))
    image = image.resize(size, Image.Resampling.BICUBIC)
    if rng.random() < 0.5:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 2.0)))
    else:  # sensor grain at full resolution: detail a reduced decode must average away
        grain = rng.normal(0, rng.uniform(3, 12), (size[1], size[0], 3))
        image = Image.fromarray(np.clip(np.asarray(image) + grain, 0, 255).astype(np.uint8))
    return image


def _synthetic(size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    width, height = size
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    period = rng.uniform(3, 60, 3)
    angle = rng.uniform(0, np.pi, 3)
    channels = [
        127 + 120 * np.sin((x * np.cos(a) + y * np.sin(a)) * 2 * np.pi / p)
        for p, a in zip(period, angle)
    ]
    pixels = np.stack(channels, axis=-1)
    pixels += rng.normal(0, rng.uniform(0, 30), pixels.shape)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    # A few solid shapes, so not everything is texture.
    draw_shapes(image, int(rng.integers(1, 6)), rng)
    return image


def _jpeg(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()
