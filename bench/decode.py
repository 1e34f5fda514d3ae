"""Decoding large photos: what draft mode (DCT-domain downscaling) saves, and whether
it changes what the model says.

    .venv/bin/python -m bench.decode [--pictures 300]

1. Cost: decode + preprocess of a 4000 × 3000 JPEG, full decode against draft mode as
   the service uses it, median of repeated runs, and the decoded picture's size in memory.
2. Agreement: top-1 of the full-decode pipeline against draft mode, with the decoded
   shorter side kept at 1, 2 or 4 × the model's resize side (the service would use
   service.DRAFT_MARGIN), on the real photos and on augmented and synthetic pictures
   large enough for draft mode to apply; only pictures draft mode decodes smaller are
   compared. As a yardstick, the same for an imperceptible change: the decoded picture
   re-saved as a JPEG of quality 95. Models: EfficientNet-Lite0 (real ImageNet weights)
   and ResNet-18 (random weights: the real ones cannot be downloaded here). Draft mode
   may be the default only if it agrees on at least 99 % for both
   (RECOGNITION_JPEG_DRAFT turns it on).

Prints tables and writes bench/results/decode.json.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bench.photos import REAL_PHOTOS, Picture, real_pictures, varied_pictures
from bench.serving import prepare_random_model
from recognition.engine.backends import ONNXRUNTIME, load_runner
from recognition.engine.images import decode_image
from recognition.engine.prepare import prepare
from recognition.engine.preprocess import Preprocessor
from recognition.engine.classifier import DRAFT_MARGIN

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "decode.json"
AGREEMENT_NEEDED = 0.99
MARGINS = (1, 2, 4)
BASELINE = "baseline: re-saved as JPEG q95"


@dataclass(frozen=True)
class Cost:
    pipeline: str
    decode_ms: float  # median
    preprocess_ms: float
    decoded_size: tuple[int, int]
    decoded_mb: float


@dataclass(frozen=True)
class Agreement:
    model: str
    weights: str
    variant: str  # "draft N×": shorter side kept >= N × the model's resize side
    compared: int  # pictures the variant changes (draft mode applies to them)
    compared_by_kind: dict[str, int]
    disagreements_by_kind: dict[str, int]
    top1_agreement: float
    max_probability_diff: float


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pictures", type=int, default=300, help="augmented + synthetic")
    parser.add_argument("--repeat", type=int, default=15, help="timed runs per pipeline")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-decode-") as scratch:
        lite0 = prepare(Path(scratch) / "lite0", model="efficientnet_lite0").manifest
        _, resnet = prepare_random_model(Path(scratch) / "resnet")
        costs = _costs(Preprocessor(resnet.preprocessing), args.repeat)
        pictures = real_pictures() + list(
            # Draft mode applies from twice the input side (512 px) up.
            varied_pictures(args.pictures, min_side=520, max_side=3200, seed=1)
        )
        agreements = _agreement("efficientnet_lite0", "real ImageNet", lite0, pictures)
        agreements += _agreement("resnet18", "random", resnet, pictures)

    report = {
        "costs": [asdict(c) for c in costs],
        "agreements": [asdict(a) for a in agreements],
        "agreement_needed": AGREEMENT_NEEDED,
        "service_margin": DRAFT_MARGIN,
        "service_margin_agrees": all(
            a.top1_agreement >= AGREEMENT_NEEDED
            for a in agreements
            if a.variant == f"draft {DRAFT_MARGIN}×"
        ),
        "real_photos": list(REAL_PHOTOS),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    _print(costs, agreements, report["service_margin_agrees"])
    print(f"\nWritten to {RESULTS}")


def _costs(preprocessor: Preprocessor, repeat: int) -> list[Cost]:
    data = _large_photo()
    side = preprocessor.spec.resize
    costs = []
    for pipeline, min_side in (("full decode", None), ("draft mode", DRAFT_MARGIN * side)):
        decode_ms, preprocess_ms = [], []
        for _ in range(repeat):
            started = time.perf_counter()
            image = decode_image(data, min_side=min_side).image
            decoded = time.perf_counter()
            preprocessor(image)
            decode_ms.append((decoded - started) * 1000)
            preprocess_ms.append((time.perf_counter() - decoded) * 1000)
        costs.append(
            Cost(
                pipeline=pipeline,
                decode_ms=statistics.median(decode_ms),
                preprocess_ms=statistics.median(preprocess_ms),
                decoded_size=image.size,
                decoded_mb=image.width * image.height * 3 / 2**20,
            )
        )
    return costs


def _large_photo() -> bytes:
    """A 4000 × 3000 camera-like JPEG: a real photo enlarged, with sensor grain."""
    path, _ = REAL_PHOTOS["rocket.jpg"]
    image = Image.open(path).convert("RGB").resize((4000, 3000), Image.Resampling.BICUBIC)
    grain = np.random.default_rng(0).normal(0, 6, (3000, 4000, 3))
    image = Image.fromarray(np.clip(np.asarray(image) + grain, 0, 255).astype(np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _agreement(name: str, weights: str, manifest, pictures: list[Picture]) -> list[Agreement]:
    run = load_runner(manifest, ONNXRUNTIME, None)
    preprocessor = Preprocessor(manifest.preprocessing)
    side = manifest.preprocessing.resize
    full = {p.name: decode_image(p.jpeg).image for p in pictures}
    expected = {n: _probabilities(run, preprocessor, image) for n, image in full.items()}
    variants: dict[str, Callable[[Picture], Image.Image | None]] = {
        f"draft {margin}×": lambda p, m=margin: _drafted(p, side * m) for margin in MARGINS
    }
    # The yardstick: an imperceptible change (re-saving the decoded picture as a JPEG of
    # quality 95), on the pictures large enough for draft mode at 1×.
    variants[BASELINE] = lambda p: _resaved(full[p.name]) if _drafted(p, side) else None
    agreements = []
    for variant, make in variants.items():
        compared: Counter[str] = Counter()
        differs: Counter[str] = Counter()
        worst = 0.0
        for picture in pictures:
            image = make(picture)
            if image is None:
                continue  # draft mode does not apply: the very same pipeline
            probabilities = _probabilities(run, preprocessor, image)
            reference = expected[picture.name]
            compared[picture.kind] += 1
            differs[picture.kind] += int(probabilities.argmax() != reference.argmax())
            worst = max(worst, float((probabilities - reference).abs().max()))
        total = sum(compared.values())
        agreements.append(
            Agreement(
                model=name,
                weights=weights,
                variant=variant,
                compared=total,
                compared_by_kind=dict(compared),
                disagreements_by_kind=dict(differs),
                top1_agreement=1 - sum(differs.values()) / max(total, 1),
                max_probability_diff=worst,
            )
        )
    return agreements


def _drafted(picture: Picture, min_side: int) -> Image.Image | None:
    image = decode_image(picture.jpeg, min_side=min_side).image
    return None if image.size == picture.size else image


def _resaved(image: Image.Image) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95)
    return decode_image(buffer.getvalue()).image


def _probabilities(run, preprocessor: Preprocessor, image: Image.Image) -> torch.Tensor:
    return torch.softmax(run(preprocessor(image).unsqueeze(0)), dim=1)[0]


def _print(costs: list[Cost], agreements: list[Agreement], kept: bool) -> None:
    print("4000 × 3000 JPEG, decode + preprocess (median):")
    print(f"{'pipeline':<12} {'decode ms':>10} {'preprocess ms':>14} {'decoded to':>12} {'MB':>6}")
    for c in costs:
        size = f"{c.decoded_size[0]}×{c.decoded_size[1]}"
        print(
            f"{c.pipeline:<12} {c.decode_ms:>10.1f} {c.preprocess_ms:>14.1f} {size:>12} "
            f"{c.decoded_mb:>6.1f}"
        )
    full, draft = costs
    total_full = full.decode_ms + full.preprocess_ms
    total_draft = draft.decode_ms + draft.preprocess_ms
    print(f"draft mode: {total_full / total_draft:.1f}× faster, "
          f"{full.decoded_mb / draft.decoded_mb:.0f}× less memory for the decoded picture")
    print("\nTop-1 against the full-decode pipeline:")
    print(f"{'model':<20} {'weights':<14} {'variant':<31} {'compared':>8} {'agree':>7} "
          f"{'max |ΔP|':>9}  differ, by kind")
    for a in agreements:
        kinds = ", ".join(
            f"{kind} {a.disagreements_by_kind.get(kind, 0)}/{n}"
            for kind, n in sorted(a.compared_by_kind.items())
        )
        print(
            f"{a.model:<20} {a.weights:<14} {a.variant:<31} {a.compared:>8} "
            f"{a.top1_agreement:>7.1%} {a.max_probability_diff:>9.4f}  {kinds}"
        )
    verdict = "yes" if kept else "no: RECOGNITION_JPEG_DRAFT stays off by default"
    print(f"Draft mode as the service would use it ({DRAFT_MARGIN}×) agrees on ≥ "
          f"{AGREEMENT_NEEDED:.0%} for both models: {verdict}")


if __name__ == "__main__":
    main()
