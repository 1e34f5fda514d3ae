"""Plain helpers shared by the tests, with no Django in them: where the project is, and
pictures made from a seed. Django-side helpers and fixtures live in tests/web_fixtures.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def noise_picture(seed: int, size: tuple[int, int] = (128, 96)) -> Image.Image:
    """Random RGB pixels, width × height: each seed gives another picture, and a random
    model scores different noise differently enough to tell the pictures apart."""
    width, height = size
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels, "RGB")


def gradient_picture(width: int, height: int, seed: int = 0) -> Image.Image:
    """Smooth gradients plus noise: structure for the convolutions, detail for a resize."""
    y, x = np.mgrid[0:height, 0:width]
    rng = np.random.default_rng(seed)
    pixels = np.stack(
        [
            255 * x / max(width - 1, 1),
            255 * y / max(height - 1, 1),
            127 + 127 * np.sin((x + y) / 7.0),
        ],
        axis=-1,
    )
    pixels += rng.normal(0, 25, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
