"""Which input scaling suits the packaged EfficientNet-Lite0 weights?

    .venv/bin/python -m bench.lite0_normalisation

TensorFlow's Lite models were trained on [-1, 1] inputs (mean = std = 0.5); torchvision
models use ImageNet mean/std. On four real photos with known content, this compares the
two: the probability given to the expected labels, whether top-1 is one of them, and the
mean log-probability of the expected labels over the photos (higher is better).

Prints a table and writes bench/results/lite0_normalisation.json.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from bench.photos import REAL_PHOTOS
from recognition.engine.images import decode_image
from recognition.engine.preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Preprocessing,
    Preprocessor,
)
from recognition.engine.specs import EFFICIENTNET_LITE0
from recognition.engine.weights import load_state_dict, obtain_official

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "lite0_normalisation.json"
SCALINGS = {
    "imagenet mean/std": Preprocessing(mean=IMAGENET_MEAN, std=IMAGENET_STD),
    "[-1, 1]": Preprocessing(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
}


@dataclass(frozen=True)
class PhotoScore:
    scaling: str
    photo: str
    expected_probability: float  # summed over the expected labels
    top1: str
    top1_correct: bool
    expected_in_top5: bool


def main() -> None:
    spec = EFFICIENTNET_LITE0
    categories = spec.categories()
    model = spec.build(len(categories))
    model.load_state_dict(load_state_dict(obtain_official(spec).path), strict=True)
    model.eval()

    scores: list[PhotoScore] = []
    for scaling, preprocessing in SCALINGS.items():
        preprocessor = Preprocessor(preprocessing)
        for photo, (path, expected) in REAL_PHOTOS.items():
            inputs = preprocessor(decode_image(path.read_bytes()).image).unsqueeze(0)
            with torch.inference_mode():
                probabilities = torch.softmax(model(inputs), dim=1)[0]
            top5 = [categories[i] for i in probabilities.topk(5).indices.tolist()]
            scores.append(
                PhotoScore(
                    scaling=scaling,
                    photo=photo,
                    expected_probability=float(
                        sum(probabilities[categories.index(label)] for label in expected)
                    ),
                    top1=top5[0],
                    top1_correct=top5[0] in expected,
                    expected_in_top5=bool(expected & set(top5)),
                )
            )

    summary = {
        scaling: _summarise([s for s in scores if s.scaling == scaling]) for scaling in SCALINGS
    }
    best = max(summary, key=lambda name: summary[name]["mean_log_probability_of_expected"])
    report = {
        "model": spec.name,
        "spec_uses": "imagenet mean/std"
        if spec.preprocessing.mean == IMAGENET_MEAN
        else "something else",
        "better_by_mean_log_probability": best,
        "summary": summary,
        "photos": [asdict(s) for s in scores],
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    _print_table(scores, summary, best)
    print(f"\nWritten to {RESULTS}")


def _summarise(scores: list[PhotoScore]) -> dict:
    return {
        "mean_log_probability_of_expected": sum(math.log(s.expected_probability) for s in scores)
        / len(scores),
        "top1_correct": sum(s.top1_correct for s in scores),
        "expected_in_top5": sum(s.expected_in_top5 for s in scores),
        "photos": len(scores),
    }


def _print_table(scores: list[PhotoScore], summary: dict, best: str) -> None:
    print(f"{'scaling':<18}  {'photo':<17}  {'P(expected)':>11}  {'top-1':<17}  top-1 ok  in top-5")
    for s in scores:
        print(
            f"{s.scaling:<18}  {s.photo:<17}  {s.expected_probability:>11.3f}  {s.top1:<17}  "
            f"{'yes' if s.top1_correct else 'no':<8}  {'yes' if s.expected_in_top5 else 'no'}"
        )
    print()
    for scaling, numbers in summary.items():
        mean_log_p = numbers["mean_log_probability_of_expected"]
        print(
            f"{scaling:<18}  mean log P(expected) {mean_log_p:+.3f}"
            f"  top-1 {numbers['top1_correct']}/{numbers['photos']}"
            f"  top-5 {numbers['expected_in_top5']}/{numbers['photos']}"
        )
    print(f"Better by mean log-probability: {best}")


if __name__ == "__main__":
    main()
