"""The int8 version of a model (prepare_model --int8) against its fp32 source, both on
ONNX Runtime: speed, and how often int8 gives fp32's top label.

    .venv/bin/python -m bench.int8 [--threads 2] [--warmup 10] [--iterations 50]
                                   [--pictures 300] [--dynamic]

Two models: ResNet-18 with RANDOM weights (the real ones cannot be downloaded here, so its
speed counts but its agreement says little: random weights give a few labels for any
picture) and EfficientNet-Lite0 with its real ImageNet weights. Each is prepared by
prepare(), quantized by recognition.engine.quantize exactly as prepare_model --int8 does
(synthetic calibration pictures), and loaded as the service loads it (load_runner,
hash check included).

Speed: forward pass only, on preprocessed photos, at batch 1 and 8; fp32 and int8 timed in
alternation, so a busy machine slows both alike. Agreement: top-1 and top-5 overlap of
int8 with fp32 on the 4 real photos and on --pictures varied ones (augmented real photos
and synthetic pictures, shorter side 256-700 px; bench/photos.py). The rule of the issue:
int8 may only become the default model with at least 99 % top-1 agreement.

--dynamic adds ONNX Runtime's dynamic quantization (weights int8, activation ranges at
run time), the alternative quantize.py rejects, timed with at most 10 calls.

Prints a table and writes bench/results/int8.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnxruntime
import torch
import torchvision

from bench.photos import real_pictures, varied_pictures
from bench.timing import Runner, alternating_latencies, speed
from recognition.engine import quantize
from recognition.engine.artifact import onnx_session
from recognition.engine.manifest import Manifest
from recognition.engine.backends import ONNXRUNTIME, load_runner
from recognition.engine.images import decode_image
from recognition.engine.prepare import prepare
from recognition.engine.preprocess import Preprocessor

REPO = Path(__file__).resolve().parents[1]

BATCH_SIZES = (1, 8)
RESULTS = REPO / "bench" / "results" / "int8.json"


@dataclass(frozen=True)
class Timing:
    model: str
    batch: int
    version: str  # "fp32", "int8" or "int8-dynamic"
    images_per_s: float
    p50_ms: float
    p95_ms: float


@dataclass(frozen=True)
class Agreement:
    model: str
    version: str
    real_agree: int
    real_total: int
    varied_agree: int
    varied_total: int
    top1: float  # over all pictures
    top5_overlap: float  # mean share of fp32's top 5 that int8 also has in its top 5
    fp32_distinct_labels: int  # how many labels fp32 gives: few means agreement is cheap
    meets_default_rule: bool  # top1 >= quantize.DEFAULT_AGREEMENT


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads; default 2")
    parser.add_argument("--warmup", type=int, default=10, help="untimed calls per model and batch")
    parser.add_argument("--iterations", type=int, default=50, help="timed calls per batch size")
    parser.add_argument("--pictures", type=int, default=300, help="varied pictures to compare on")
    parser.add_argument("--dynamic", action="store_true", help="also dynamic quantization")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()

    started = time.perf_counter()
    real = [decode_image(p.jpeg).image for p in real_pictures()]
    varied = [
        decode_image(p.jpeg).image
        for p in varied_pictures(args.pictures, min_side=256, max_side=700, seed=0)
    ]
    timings: list[Timing] = []
    agreements: list[Agreement] = []
    models = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name, fp32 in _prepared(Path(scratch)).items():
            int8 = quantize.quantize(fp32.directory.parent, fp32)
            models[name] = _describe(fp32, int8)
            runners = {
                "fp32": load_runner(fp32, ONNXRUNTIME, args.threads),
                "int8": load_runner(int8, ONNXRUNTIME, args.threads),
            }
            preprocessor = Preprocessor(fp32.preprocessing)
            inputs = preprocessor.batch(real), preprocessor.batch(varied)
            timings += _timings(name, runners, inputs[0], args.warmup, args.iterations)
            slow = {}
            if args.dynamic:
                slow["int8-dynamic"] = _dynamic_runner(fp32, Path(scratch), args.threads)
                timings += _timings(name, slow, inputs[0], 2, min(args.iterations, 10))
            logits = {version: _logits(run, inputs) for version, run in {**runners, **slow}.items()}
            agreements += [
                _agreement(name, version, logits["fp32"], logits[version], len(real))
                for version in logits
                if version != "fp32"
            ]
    report = {
        "measures": "ONNX Runtime CPU, forward pass only; agreement of int8 with fp32 top-1",
        "onnxruntime_version": onnxruntime.__version__,
        "torch_version": torch.__version__,
        "torchvision_version": torchvision.__version__,
        "threads": args.threads,
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "warmup": args.warmup,
        "iterations": args.iterations,
        "pictures": {"real": len(real), "varied": len(varied), "varied_sides": [256, 700]},
        "default_rule": f"top-1 agreement >= {quantize.DEFAULT_AGREEMENT:.0%}",
        "models": models,
        "timings": [asdict(t) for t in timings],
        "agreement": [asdict(a) for a in agreements],
        "seconds": round(time.perf_counter() - started),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    _print_table(report, timings, agreements)
    print(f"\nWritten to {args.output}")


def _prepared(scratch: Path) -> dict[str, Manifest]:
    """ResNet-18 with seeded random weights, and EfficientNet-Lite0 with its real ones."""
    torch.manual_seed(0)
    weights = scratch / "resnet18-random.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)
    models_dir = scratch / "models"
    return {
        "resnet18": prepare(models_dir, weights_file=weights, custom=True).manifest,
        "efficientnet_lite0": prepare(models_dir, model="efficientnet_lite0").manifest,
    }


def _describe(fp32: Manifest, int8: Manifest) -> dict:
    return {
        "weights": "random-init" if fp32.custom else f"{fp32.weights_source} (real ImageNet)",
        "fp32": fp32.key,
        "int8": int8.key,
        "quantization": int8.quantization,
        "fp32_onnx_mb": round(fp32.onnx_path.stat().st_size / 1e6, 1),
        "int8_onnx_mb": round(int8.onnx_path.stat().st_size / 1e6, 1),
        "manifest_top1_agreement": int8.top1_agreement,
        "manifest_check_pictures": quantize.CHECK_PICTURES,
    }


def _dynamic_runner(fp32: Manifest, scratch: Path, threads: int) -> Runner:
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared, target = scratch / f"{fp32.key}.pre.onnx", scratch / f"{fp32.key}.dynamic.onnx"
    quant_pre_process(str(fp32.onnx_path), str(prepared), skip_symbolic_shape=True)
    quantize_dynamic(str(prepared), str(target), weight_type=QuantType.QInt8)
    session = onnx_session(target, threads)
    return lambda batch: torch.from_numpy(session.run(None, {"input": batch.numpy()})[0])


def _logits(run: Runner, inputs: tuple[torch.Tensor, ...]) -> np.ndarray:
    everything = torch.cat(inputs)
    batches = [everything[i : i + 8] for i in range(0, len(everything), 8)]
    return np.concatenate([run(batch).numpy() for batch in batches])


def _agreement(
    name: str, version: str, fp32: np.ndarray, other: np.ndarray, real: int
) -> Agreement:
    same = fp32.argmax(1) == other.argmax(1)
    top5 = np.argsort(-fp32, axis=1)[:, :5], np.argsort(-other, axis=1)[:, :5]
    overlap = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(*top5)])
    return Agreement(
        model=name,
        version=version,
        real_agree=int(same[:real].sum()),
        real_total=real,
        varied_agree=int(same[real:].sum()),
        varied_total=len(same) - real,
        top1=float(same.mean()),
        top5_overlap=float(overlap),
        fp32_distinct_labels=len(set(fp32.argmax(1).tolist())),
        meets_default_rule=bool(same.mean() >= quantize.DEFAULT_AGREEMENT),
    )


def _timings(
    name: str, runners: dict[str, Runner], pictures: torch.Tensor, warmup: int, iterations: int
) -> list[Timing]:
    timings = []
    for batch in BATCH_SIZES:
        inputs = pictures[torch.arange(batch) % len(pictures)]
        latencies = alternating_latencies(runners, inputs, warmup, iterations)
        timings += [Timing(name, batch, v, **speed(batch, s)) for v, s in latencies.items()]
    return timings




def _print_table(report: dict, timings: list[Timing], agreements: list[Agreement]) -> None:
    print(
        f"int8 ({quantize.SCHEME}) vs fp32 on ONNX Runtime {report['onnxruntime_version']}, "
        f"{report['threads']} threads of {report['cpu_count']} cores, {report['warmup']} "
        f"warm-up + {report['iterations']} timed calls, forward pass only"
    )
    print(
        f"{'model':<19} {'weights':<8} {'batch':>5}  {'version':<12} {'images/s':>9} "
        f"{'p50 ms':>8} {'p95 ms':>8} {'vs fp32':>8}"
    )
    fp32_speed = {(t.model, t.batch): t.images_per_s for t in timings if t.version == "fp32"}
    for t in timings:
        ratio = t.images_per_s / fp32_speed[(t.model, t.batch)]
        print(
            f"{t.model:<19} {_weights(report, t.model):<8} {t.batch:>5}  {t.version:<12} "
            f"{t.images_per_s:>9.1f} {t.p50_ms:>8.1f} {t.p95_ms:>8.1f} {ratio:>7.2f}×"
        )
    pictures = report["pictures"]
    print(
        f"\nTop-1 agreement with fp32 on {pictures['real']} real photos and {pictures['varied']} "
        f"varied pictures; rule for the default model: {report['default_rule']}"
    )
    print(
        f"{'model':<19} {'weights':<8} {'version':<12} {'real':>6} {'varied':>9} {'all':>7} "
        f"{'top-5':>7} {'fp32 labels':>11}  ≥ 99 %?"
    )
    for a in agreements:
        verdict = "yes" if a.meets_default_rule else "no"
        if _weights(report, a.model) == "random":
            verdict += " (random weights: says little)"
        print(
            f"{a.model:<19} {_weights(report, a.model):<8} {a.version:<12} "
            f"{a.real_agree:>3}/{a.real_total:<2} {a.varied_agree:>5}/{a.varied_total:<3} "
            f"{a.top1:>7.1%} {a.top5_overlap:>7.1%} {a.fp32_distinct_labels:>11}  {verdict}"
        )
    recorded = ", ".join(
        f"{name} {m['manifest_top1_agreement']:.1%} of {m['manifest_check_pictures']}"
        for name, m in report["models"].items()
    )
    print(f"Recorded in the int8 manifests (synthetic check pictures): {recorded}")


def _weights(report: dict, model: str) -> str:
    return "random" if report["models"][model]["weights"] == "random-init" else "real"


if __name__ == "__main__":
    main()
