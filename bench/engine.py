"""Speed of the served ResNet-18 (TorchScript and ONNX Runtime) against torchvision's
eager model, next to the CPU's fp32 compute limit.

    .venv/bin/python bench/engine.py [--threads N] [--warmup 10] [--iterations 50]

Times the forward pass only (inputs are ready-made tensors: decoding and preprocessing
cost the same for all), at batch 1 and 8. The artifacts are built by prepare() and
loaded the way the service loads them (backends.load_runner). The weights are random:
speed does not depend on their values, and no download is needed. The models are timed
in alternation, so a busy machine slows all alike.

Prints a table and writes bench/results/engine.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

# bench/http.py must not shadow the standard library's http package (torch imports it).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np
import torch
import torchvision

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from recognition.engine.backends import BACKENDS, load_runner  # noqa: E402
from recognition.engine.prepare import prepare  # noqa: E402

BATCH_SIZES = (1, 8)
RESULTS = REPO / "bench" / "results" / "engine.json"


@dataclass(frozen=True)
class Timing:
    batch: int
    model: str  # "eager", "torchscript" or "onnxruntime"
    images_per_s: float
    p50_ms: float
    p95_ms: float


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="default: all cores")
    parser.add_argument("--warmup", type=int, default=10, help="untimed calls per model and batch")
    parser.add_argument(
        "--iterations", type=int, default=50, help="timed calls per model and batch"
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    models = _models(args.threads)
    timings: list[Timing] = []
    for batch in BATCH_SIZES:
        inputs = torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(batch))
        latencies = _alternating_latencies(models, inputs, args.warmup, args.iterations)
        timings += [_summarise(batch, name, seconds) for name, seconds in latencies.items()]

    ratios = {batch: _ratios(timings, batch) for batch in BATCH_SIZES}
    roofline = _roofline(os.cpu_count() or 1)
    report = {
        "model": "resnet18",
        "weights": "random-init (speed does not depend on the values)",
        "measures": "forward pass only, torch.inference_mode, CPU",
        "torch_version": torch.__version__,
        "torchvision_version": torchvision.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "warmup": args.warmup,
        "iterations": args.iterations,
        "timings": [asdict(t) for t in timings],
        "over_eager_images_per_s": {str(b): r for b, r in ratios.items()},
        "fp32_roofline": roofline,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    _print_table(report, timings, ratios)
    print(f"\nWritten to {args.output}")


def _models(threads: int) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    torch.manual_seed(0)
    eager = torchvision.models.resnet18(weights=None).eval()
    with tempfile.TemporaryDirectory() as scratch:
        weights = Path(scratch) / "resnet18-random.pth"
        torch.save(eager.state_dict(), weights)
        manifest = prepare(Path(scratch) / "models", weights_file=weights, custom=True).manifest
        # Loaded exactly as the service loads them, hash check included.
        runners = {name: load_runner(manifest, name, threads) for name in BACKENDS}
    return {"eager": eager, **runners}


def _roofline(cores: int) -> dict:
    """Images/s if every core did nothing but fp32 FMAs at its clock: AVX2 has two FMA
    units of 8 floats, 32 FLOP per cycle. ResNet-18 at 224 px is 1.814 GMAC per image."""
    flop_per_image = 2 * 1.814e9
    mhz = _cpu_mhz()
    if mhz is None:
        return {"note": "CPU clock unknown"}
    peak = cores * mhz * 1e6 * 32
    return {
        "cores": cores,
        "clock_mhz": mhz,
        "flop_per_cycle_per_core": 32,
        "gflop_per_image": flop_per_image / 1e9,
        "images_per_s": peak / flop_per_image,
    }


def _cpu_mhz() -> float | None:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return None
    speeds = [float(line.split(":")[1]) for line in lines if line.startswith("cpu MHz")]
    return max(speeds) if speeds else None


def _alternating_latencies(
    models: dict[str, Callable[[torch.Tensor], torch.Tensor]],
    inputs: torch.Tensor,
    warmup: int,
    iterations: int,
) -> dict[str, list[float]]:
    latencies: dict[str, list[float]] = {name: [] for name in models}
    with torch.inference_mode():
        for _ in range(warmup):
            for model in models.values():
                model(inputs)
        for _ in range(iterations):
            for name, model in models.items():
                started = time.perf_counter()
                model(inputs)
                latencies[name].append(time.perf_counter() - started)
    return latencies


def _summarise(batch: int, name: str, seconds: list[float]) -> Timing:
    milliseconds = np.array(seconds) * 1000
    return Timing(
        batch=batch,
        model=name,
        images_per_s=batch * len(seconds) / sum(seconds),
        p50_ms=float(np.percentile(milliseconds, 50)),
        p95_ms=float(np.percentile(milliseconds, 95)),
    )


def _ratios(timings: list[Timing], batch: int) -> dict[str, float]:
    speed = {t.model: t.images_per_s for t in timings if t.batch == batch}
    return {name: speed[name] / speed["eager"] for name in BACKENDS}


def _print_table(report: dict, timings: list[Timing], ratios: dict[int, dict]) -> None:
    print(
        f"ResNet-18 with RANDOM-INIT weights (speed only), torch {report['torch_version']}, "
        f"{report['threads']} threads of {report['cpu_count']} cores, "
        f"{report['warmup']} warm-up + {report['iterations']} timed calls, forward pass only"
    )
    print(f"{'batch':>5}  {'model':<11}  {'images/s':>9}  {'p50 ms':>8}  {'p95 ms':>8}")
    for t in timings:
        print(
            f"{t.batch:>5}  {t.model:<11}  {t.images_per_s:>9.1f}  "
            f"{t.p50_ms:>8.1f}  {t.p95_ms:>8.1f}"
        )
    for batch, by_backend in ratios.items():
        print(
            f"batch {batch}, images/s over eager: "
            + ", ".join(f"{name} {ratio:.2f}×" for name, ratio in by_backend.items())
        )
    roofline = report["fp32_roofline"]
    if "images_per_s" in roofline:
        print(
            f"fp32 roofline: {roofline['cores']} cores × {roofline['clock_mhz']:.0f} MHz × "
            f"32 FLOP/cycle ÷ {roofline['gflop_per_image']:.2f} GFLOP/image = "
            f"{roofline['images_per_s']:.1f} images/s"
        )


if __name__ == "__main__":
    main()
