"""Speed of the served ResNet-18 (TorchScript, ONNX Runtime and its int8 version) against
torchvision's eager model and a plain ONNX Runtime session, next to the CPU's fp32 compute
limit.

    .venv/bin/python -m bench.engine [--threads N] [--warmup 10] [--iterations 50]

Times the forward pass only (inputs are ready-made tensors: decoding and preprocessing
cost the same for all), at batch 1 and 8. The artifacts are built by prepare() and
loaded the way the service loads them (backends.load_runner); "raw onnxruntime" is the
same model.onnx in an InferenceSession with default options, the yardstick the served
backend is held to; "int8" is the version prepare_model --int8 writes (quantize.py,
synthetic calibration), served by ONNX Runtime. The weights are random:
speed does not depend on their values, and no download is needed. The models are timed
in alternation, so a busy machine slows all alike.

Prints a table and writes bench/results/engine.json.
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

import torch
import torchvision

from bench.timing import Runner, alternating_latencies, raw_onnxruntime, speed
from recognition.engine import quantize
from recognition.engine.backends import BACKENDS, ONNXRUNTIME, load_runner
from recognition.engine.prepare import prepare

REPO = Path(__file__).resolve().parents[1]

BATCH_SIZES = (1, 8)
RESULTS = REPO / "bench" / "results" / "engine.json"
RAW = "raw onnxruntime"


@dataclass(frozen=True)
class Timing:
    batch: int
    model: str  # "eager", "torchscript", "onnxruntime", "raw onnxruntime" or "int8"
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
        latencies = alternating_latencies(models, inputs, args.warmup, args.iterations)
        timings += [Timing(batch, name, **speed(batch, s)) for name, s in latencies.items()]

    ratios = {batch: _ratios(timings, batch) for batch in BATCH_SIZES}
    roofline = _roofline(os.cpu_count() or 1, args.threads)
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
        "over_raw_onnxruntime_images_per_s": {str(b): _over_raw(timings, b) for b in BATCH_SIZES},
        "fp32_roofline": roofline,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    _print_table(report, timings, ratios)
    print(f"\nWritten to {args.output}")


def _models(threads: int) -> dict[str, Runner]:
    torch.manual_seed(0)
    eager = torchvision.models.resnet18(weights=None).eval()
    with tempfile.TemporaryDirectory() as scratch:
        weights = Path(scratch) / "resnet18-random.pth"
        torch.save(eager.state_dict(), weights)
        manifest = prepare(Path(scratch) / "models", weights_file=weights, custom=True).manifest
        # Loaded exactly as the service loads them, hash check included.
        runners = {name: load_runner(manifest, name, threads) for name in BACKENDS}
        int8 = quantize.quantize(manifest.directory.parent, manifest)
        runners["int8"] = load_runner(int8, ONNXRUNTIME, threads)
        runners[RAW] = raw_onnxruntime(manifest.onnx_path, threads)
    return {"eager": eager, **runners}


def _roofline(cores: int, threads: int) -> dict:
    """Two fp32 limits. Nominal: every core doing nothing but FMAs at the clock
    /proc/cpuinfo reports, AVX2's 32 FLOP per cycle (two 8-float FMA units); a CPU that
    boosts above that clock, or has wider units, beats it. Measured: the FLOP rate of a
    large matrix product (SGEMM, the kernel convolutions come down to), which includes
    the real clock. ResNet-18 at 224 px is 1.814 GMAC per image."""
    flop_per_image = 2 * 1.814e9
    roofline = {"gflop_per_image": flop_per_image / 1e9}
    mhz = _cpu_mhz()
    if mhz is not None:
        peak = cores * mhz * 1e6 * 32
        roofline["nominal"] = {
            "cores": cores,
            "clock_mhz": mhz,
            "flop_per_cycle_per_core": 32,
            "images_per_s": peak / flop_per_image,
        }
    gflops = _sgemm_gflops(threads)
    roofline["measured_sgemm"] = {
        "threads": threads,
        "gflops": gflops,
        "images_per_s": gflops * 1e9 / flop_per_image,
    }
    return roofline


def _sgemm_gflops(threads: int, size: int = 2048, calls: int = 10) -> float:
    """Best FLOP rate of fp32 size×size matrix products, by torch (MKL or its own
    kernels) and by NumPy (OpenBLAS): on some CPUs one of them lacks the widest kernels."""
    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    products = (lambda: torch.mm(a, b), lambda: a.numpy() @ b.numpy())
    best = 0.0
    for product in products:
        product()
        for _ in range(3):
            started = time.perf_counter()
            for _ in range(calls):
                product()
            best = max(best, 2 * size**3 * calls / (time.perf_counter() - started) / 1e9)
    return best


def _cpu_mhz() -> float | None:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return None
    speeds = [float(line.split(":")[1]) for line in lines if line.startswith("cpu MHz")]
    return max(speeds) if speeds else None




def _ratios(timings: list[Timing], batch: int) -> dict[str, float]:
    speed = {t.model: t.images_per_s for t in timings if t.batch == batch}
    return {name: speed[name] / speed["eager"] for name in speed if name != "eager"}


def _over_raw(timings: list[Timing], batch: int) -> dict[str, float]:
    speed = {t.model: t.images_per_s for t in timings if t.batch == batch}
    return {name: speed[name] / speed[RAW] for name in (*BACKENDS, "int8")}


def _print_table(report: dict, timings: list[Timing], ratios: dict[int, dict]) -> None:
    print(
        f"ResNet-18 with RANDOM-INIT weights (speed only), torch {report['torch_version']}, "
        f"{report['threads']} threads of {report['cpu_count']} cores, "
        f"{report['warmup']} warm-up + {report['iterations']} timed calls, forward pass only"
    )
    print(f"{'batch':>5}  {'model':<15}  {'images/s':>9}  {'p50 ms':>8}  {'p95 ms':>8}")
    for t in timings:
        print(
            f"{t.batch:>5}  {t.model:<15}  {t.images_per_s:>9.1f}  "
            f"{t.p50_ms:>8.1f}  {t.p95_ms:>8.1f}"
        )
    for batch, by_backend in ratios.items():
        print(
            f"batch {batch}, images/s over eager: "
            + ", ".join(f"{name} {ratio:.2f}×" for name, ratio in by_backend.items())
        )
    for batch, by_backend in report["over_raw_onnxruntime_images_per_s"].items():
        print(
            f"batch {batch}, images/s over raw onnxruntime: "
            + ", ".join(f"{name} {ratio:.2f}×" for name, ratio in by_backend.items())
        )
    roofline = report["fp32_roofline"]
    if "nominal" in roofline:
        nominal = roofline["nominal"]
        print(
            f"fp32 limit, nominal: {nominal['cores']} cores × {nominal['clock_mhz']:.0f} MHz × "
            f"32 FLOP/cycle ÷ {roofline['gflop_per_image']:.2f} GFLOP/image = "
            f"{nominal['images_per_s']:.1f} images/s"
        )
    measured = roofline["measured_sgemm"]
    print(
        f"fp32 limit, measured: SGEMM at {measured['gflops']:.0f} GFLOP/s on "
        f"{measured['threads']} threads ÷ {roofline['gflop_per_image']:.2f} GFLOP/image = "
        f"{measured['images_per_s']:.1f} images/s"
    )


if __name__ == "__main__":
    main()
