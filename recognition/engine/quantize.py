"""An int8 version of a prepared model, for ONNX Runtime on CPU.

The fp32 ONNX model is quantized statically, in QDQ format, with ONNX Runtime's tools:
int8 weights per output channel, uint8 activations whose ranges come from calibration
pictures. bench/int8.py measures the result. Why these settings, on an AVX2 CPU:

- static, not dynamic: dynamic quantization turns convolutions into ConvInteger, which
  ONNX Runtime runs 3-10x slower than fp32 (bench/int8.py --dynamic); static QDQ fuses
  into QLinearConv and runs 1.4-2x faster than fp32;
- 7-bit weights (reduce_range): without VNNI, the uint8 x int8 kernels add products in
  pairs into saturating int16; with full 8-bit weights those sums overflow, and
  EfficientNet-Lite0 agreed with fp32 on 66 % of the pictures instead of 77 %;
- per channel: with one scale per tensor, the depthwise convolutions of EfficientNet
  lose most of their precision (22 % agreement);
- quant_pre_process first: without it the exported biases are not initializers, no
  convolution fuses and the int8 model runs slower than fp32.

The calibration pictures are made here from seeded noise with the 1/f spectrum of
natural photos (their activation ranges come close to those of real photos), so
quantizing needs no data set and gives the same file every time. Callers with real
pictures may pass them instead.

The int8 version is a model version of its own, <models>/<fp32 key>-int8/, with
model.onnx and manifest.json and no TorchScript artifact. Quantizing never makes it
active; activating it (recognition/active_model.py) is refused by check_may_be_active()
unless it agrees with fp32 on at least DEFAULT_AGREEMENT of the check pictures.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process
from PIL import Image, ImageDraw

from . import model_store
from .artifact import onnx_session
from .manifest import ONNX_NAME, QUANTIZED_SUFFIX, ArtifactError, Manifest
from .preprocess import Preprocessor
from .weights import sha256_file

SCHEME = "int8-static-qdq"
# The issue's rule: an int8 version may become the default only when it gives fp32's
# top-1 label for at least this share of the check pictures.
DEFAULT_AGREEMENT = 0.99
CALIBRATION_PICTURES = 64
CHECK_PICTURES = 32
# Different seeds: the agreement is measured on pictures the calibration never saw.
CALIBRATION_SEED = 0
CHECK_SEED = 1
_BATCH = 8


def int8_key(fp32: Manifest) -> str:
    return fp32.key + QUANTIZED_SUFFIX


def find_int8(models_dir: Path, fp32: Manifest) -> Manifest | None:
    """The intact int8 version of `fp32`, if it was quantized already."""
    return model_store.find_prepared(models_dir, int8_key(fp32))


def may_be_default(manifest: Manifest) -> bool:
    return manifest.top1_agreement is not None and manifest.top1_agreement >= DEFAULT_AGREEMENT


def check_may_be_active(manifest: Manifest) -> None:
    """Refuse an int8 version as the active model unless its agreement with fp32 allows."""
    if manifest.quantization is None:
        return
    if not may_be_default(manifest):
        raise ArtifactError(
            f"{manifest.key} gives the fp32 model's top label for "
            f"{_percent(manifest.top1_agreement)} of the check pictures, less than the "
            f"{DEFAULT_AGREEMENT:.0%} an active model needs; it stays selectable with "
            f"RECOGNITION_MODEL={manifest.key}."
        )


def quantize(
    models_dir: Path,
    fp32: Manifest,
    *,
    calibration: torch.Tensor | None = None,
    check: torch.Tensor | None = None,
) -> Manifest:
    """Write the int8 version of `fp32` (replacing a stale one) and return its manifest.
    `calibration` and `check` are preprocessed batches (N, 3, H, W); by default seeded
    synthetic pictures. The active model stays as it is."""
    _check_source(fp32)
    preprocessor = Preprocessor(fp32.preprocessing)
    if calibration is None:
        calibration = preprocessor.batch(synthetic_pictures(CALIBRATION_PICTURES, CALIBRATION_SEED))
    if check is None:
        check = preprocessor.batch(synthetic_pictures(CHECK_PICTURES, CHECK_SEED))
    models_dir = Path(models_dir)
    key = int8_key(fp32)
    staging = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=models_dir))
    try:
        quantized = staging / ONNX_NAME
        quantize_onnx(fp32.onnx_path, quantized, calibration, staging / "prepared.onnx")
        agreement, max_abs_diff = compare(fp32.onnx_path, quantized, check)
        manifest = dataclasses.replace(
            fp32,
            version=fp32.version + QUANTIZED_SUFFIX,
            artifact_sha256=None,
            max_abs_diff=None,
            created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            directory=models_dir / key,
            onnx_sha256=sha256_file(quantized),
            onnx_max_abs_diff=max_abs_diff,
            quantization=SCHEME,
            quantized_from=fp32.key,
            top1_agreement=agreement,
        )
        manifest.write_to(staging)
        model_store.install(staging, models_dir / key)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def quantize_onnx(source: Path, target: Path, calibration: torch.Tensor, scratch: Path) -> None:
    """Static QDQ quantization of an fp32 ONNX model; see the module docstring."""
    quant_pre_process(str(source), str(scratch), skip_symbolic_shape=True)
    try:
        with _root_logger_quiet_below(logging.WARNING):
            quantize_static(
                str(scratch),
                str(target),
                _Batches(calibration),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                reduce_range=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
            )
    finally:
        scratch.unlink(missing_ok=True)


def compare(reference: Path, candidate: Path, inputs: torch.Tensor) -> tuple[float, float]:
    """Top-1 agreement of `candidate` with `reference`, and their largest logit difference."""
    expected, actual = run_onnx(reference, inputs), run_onnx(candidate, inputs)
    agreement = float((expected.argmax(1) == actual.argmax(1)).mean())
    return agreement, float(np.abs(expected - actual).max())


def run_onnx(path: Path, inputs: torch.Tensor) -> np.ndarray:
    session = onnx_session(path)
    batches = [inputs[i : i + _BATCH].numpy() for i in range(0, len(inputs), _BATCH)]
    return np.concatenate([session.run(None, {"input": batch})[0] for batch in batches])


def synthetic_pictures(count: int, seed: int, size=(320, 256)) -> list[Image.Image]:
    """Seeded pictures with roughly the statistics of photos: coloured noise whose power
    falls off as 1/f like natural scenes', with a few solid shapes on top."""
    rng = np.random.default_rng(seed)
    return [_synthetic_picture(size, rng) for _ in range(count)]


def _synthetic_picture(size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    width, height = size
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    frequency = np.hypot(fx, fy)
    frequency[0, 0] = 1.0
    channels = []
    for _ in range(3):
        spectrum = rng.normal(size=frequency.shape) + 1j * rng.normal(size=frequency.shape)
        plane = np.fft.irfft2(spectrum / frequency ** rng.uniform(0.8, 1.2), s=(height, width))
        channels.append((plane - plane.mean()) / (plane.std() + 1e-8))
    # Correlated colour channels, like real scenes, rather than three independent greys.
    mixing = np.eye(3) + rng.normal(scale=0.5, size=(3, 3))
    pixels = np.stack(channels, axis=-1) @ mixing.T
    pixels = 127 + pixels * rng.uniform(25, 60) + rng.uniform(-50, 50, 3)
    picture = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw_shapes(picture, int(rng.integers(0, 5)), rng)
    return picture


def draw_shapes(picture: Image.Image, count: int, rng: np.random.Generator) -> None:
    """Draw `count` solid ellipses and rectangles of random colours onto `picture`."""
    draw = ImageDraw.Draw(picture)
    width, height = picture.size
    for _ in range(count):
        x0, x1 = sorted(rng.integers(0, width, 2))
        y0, y1 = sorted(rng.integers(0, height, 2))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=colour)


def _check_source(fp32: Manifest) -> None:
    if fp32.quantization:
        raise ArtifactError(f"{fp32.key} is already quantized ({fp32.quantization}).")
    if fp32.onnx_sha256 is None or not fp32.onnx_path.is_file():
        raise ArtifactError(
            f"{fp32.key} has no ONNX model to quantize. "
            "Run `python manage.py prepare_model` to rebuild it."
        )
    if sha256_file(fp32.onnx_path) != fp32.onnx_sha256:
        raise ArtifactError(
            f"The ONNX model of {fp32.key} does not match its manifest; refusing to quantize "
            "it. Run `python manage.py prepare_model` to rebuild it."
        )


@contextmanager
def _root_logger_quiet_below(level: int) -> Iterator[None]:
    """The quantizer logs dozens of routine INFO lines per model through the root logger
    (which Django's settings print); its warnings still come through. Quantizing runs
    from a command or a benchmark, never inside the server, so the global switch is safe."""
    previous = logging.root.level
    logging.root.setLevel(max(previous, level))
    try:
        yield
    finally:
        logging.root.setLevel(previous)


class _Batches(CalibrationDataReader):
    def __init__(self, inputs: torch.Tensor):
        self._batches = iter(range(0, len(inputs), _BATCH))
        self._inputs = inputs

    def get_next(self) -> dict | None:
        start = next(self._batches, None)
        if start is None:
            return None
        return {"input": self._inputs[start : start + _BATCH].numpy()}


def _percent(share: float | None) -> str:
    return "an unmeasured share" if share is None else f"{share:.1%}"
