"""The real service over HTTP against a typical hand-rolled Flask server, in one run.

    .venv/bin/python -m bench.over_http [--levels 1,8,20] [--requests 120] [--int8]

Starts, on 127.0.0.1 only:
- our service: gunicorn with gunicorn.conf.py, production settings (DEBUG off), SQLite,
  a random-init ResNet-18 prepared by prepare_model (speed does not depend on weights);
- bench/seed_flask_app.py: one process, eager torchvision ResNet-18 with the same
  weights, preprocessing per request, no batching.
Both get the same bounded load: for each number of concurrent clients, a fixed number of
uploads, every one a distinct image (so deduplication cannot help us). Before the
servers start it also times the same model.onnx in a plain ONNX Runtime session: its
batch-1 latency (what a lone request cannot beat) and its batch-8 throughput (the
ceiling an HTTP service on this machine can approach).

--int8 adds a third server: our service serving the int8 version of the model
(prepare_model --int8; not the default, see bench/int8.py), in its own data directory.

Prints a table and writes bench/results/over_http.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path

import torch

from bench.serving import (
    Run,
    create_tokens,
    distinct_uploads,
    free_port,
    prepare_random_model,
    running_service,
    send_uploads,
    stop,
    wait_for_port,
)
from bench.timing import alternating_latencies, raw_onnxruntime, speed
from recognition.engine import quantize

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "over_http.json"
PYTHON = sys.executable


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", default="1,8,20", help="concurrent clients, comma-separated")
    parser.add_argument("--requests", type=int, default=120, help="uploads per level and server")
    parser.add_argument("--int8", action="store_true", help="also serve the int8 version")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    levels = [int(level) for level in args.levels.split(",")]

    with tempfile.TemporaryDirectory(prefix="bench-http-") as scratch, ExitStack() as stack:
        data_dir = Path(scratch) / "data"
        weights, manifest = prepare_random_model(data_dir)
        raw = _raw_onnxruntime(manifest.onnx_path)
        print(
            f"raw ONNX Runtime: batch 1 p50 {raw['batch1_p50_ms']:.1f} ms, "
            f"batch 8 {raw['batch8_images_per_s']:.1f} images/s"
        )
        services = {"ours": (data_dir, {})}
        if args.int8:
            int8_dir = Path(scratch) / "data-int8"
            _, fp32 = prepare_random_model(int8_dir)
            int8 = quantize.quantize(int8_dir / "models", fp32)
            services["ours-int8"] = (int8_dir, {"RECOGNITION_MODEL": int8.key})

        bodies = distinct_uploads(args.requests * len(levels))
        seed_port = free_port()
        seed = _start_seed(weights, seed_port)
        stack.callback(stop, seed)
        servers = []
        for name, (directory, settings) in services.items():
            port, process = stack.enter_context(running_service(directory, settings))
            [token] = create_tokens(directory, port, ["bench"])
            headers = {"Authorization": f"Token {token}"}
            servers.append((name, port, process, "/api/v1/classifications/", headers))
        wait_for_port(seed_port)
        servers.append(("seed-flask", seed_port, seed, "/predict", {}))
        runs: list[Run] = []
        for n, clients in enumerate(levels):
            chunk = bodies[n * args.requests : (n + 1) * args.requests]
            for name, port, process, path, headers in servers:
                runs.append(send_uploads(name, port, path, headers, chunk, clients, process))

    report = {
        "machine": {"cpu_count": os.cpu_count(), "torch": torch.__version__},
        "raw_onnxruntime": raw,
        "runs": [asdict(run) for run in runs],
        "ratios": _ratios(runs, raw),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    _print(report, runs)
    print(f"\nWritten to {args.output}")


def _raw_onnxruntime(path: Path) -> dict[str, float]:
    run = {"raw": raw_onnxruntime(path, os.cpu_count() or 1)}
    one = alternating_latencies(run, torch.randn(1, 3, 224, 224), warmup=5, iterations=40)
    eight = alternating_latencies(run, torch.randn(8, 3, 224, 224), warmup=3, iterations=15)
    return {
        "batch1_p50_ms": speed(1, one["raw"])["p50_ms"],
        "batch8_images_per_s": speed(8, eight["raw"])["images_per_s"],
    }


def _start_seed(weights: Path, port: int) -> subprocess.Popen:
    return subprocess.Popen(
        [PYTHON, "-m", "bench.seed_flask_app", str(port), str(weights)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _ratios(runs: list[Run], raw: dict[str, float]) -> dict:
    by = {(run.server, run.clients): run for run in runs}
    ratios = {}
    for (server, clients), run in by.items():
        if server == "seed-flask":
            continue
        seed = by.get(("seed-flask", clients))
        ratios[f"{server} {clients}"] = {
            "server": server,
            "clients": clients,
            "over_seed_images_per_s": run.images_per_s / seed.images_per_s if seed else None,
            "over_raw_onnxruntime_batch8": run.images_per_s / raw["batch8_images_per_s"],
            "p50_over_raw_onnxruntime_batch1_p50": run.p50_ms / raw["batch1_p50_ms"],
        }
    return ratios


def _print(report: dict, runs: list[Run]) -> None:
    print(
        f"{'server':<11} {'clients':>7} {'req':>5} {'err':>4} {'img/s':>7} "
        f"{'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'peak RSS MB':>12}"
    )
    for run in runs:
        print(
            f"{run.server:<11} {run.clients:>7} {run.requests:>5} {run.errors:>4} "
            f"{run.images_per_s:>7.1f} {run.p50_ms:>8.1f} {run.p95_ms:>8.1f} "
            f"{run.max_ms:>8.1f} {run.peak_rss_mb:>12.0f}"
        )
    for ratio in report["ratios"].values():
        print(
            f"{ratio['server']:>9}, {ratio['clients']:>2} clients: images/s over seed "
            f"{ratio['over_seed_images_per_s']:.2f}×, over raw ONNX Runtime batch 8 "
            f"{ratio['over_raw_onnxruntime_batch8']:.2f}×; p50 over raw batch-1 p50 "
            f"{ratio['p50_over_raw_onnxruntime_batch1_p50']:.2f}×"
        )


if __name__ == "__main__":
    main()
