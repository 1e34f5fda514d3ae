"""The real service over HTTP against a typical hand-rolled Flask server, in one run.

    .venv/bin/python bench/http.py [--levels 1,8,20] [--requests 120]

Starts, on 127.0.0.1 only:
- our service: gunicorn with gunicorn.conf.py, production settings (DEBUG off), SQLite,
  a random-init ResNet-18 prepared by prepare_model (speed does not depend on weights);
- bench/seed_flask_app.py: one process, eager torchvision ResNet-18 with the same
  weights, preprocessing per request, no batching.
Both get the same bounded load: for each number of concurrent clients, a fixed number of
uploads, every one a distinct image (so deduplication cannot help us). Before the
servers start it also times the raw ONNX Runtime model at batch 8, the ceiling an HTTP
service on this machine can approach. Prints a table and writes bench/results/http.json.
"""

from __future__ import annotations

import sys
from pathlib import Path

# This script is bench/http.py: its own folder, first on sys.path, would shadow the
# standard library's http package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict  # noqa: E402

import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.serving import (  # noqa: E402
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
from recognition.engine.backends import ONNXRUNTIME, load_runner  # noqa: E402

RESULTS = REPO / "bench" / "results" / "http.json"
PYTHON = sys.executable


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", default="1,8,20", help="concurrent clients, comma-separated")
    parser.add_argument("--requests", type=int, default=120, help="uploads per level and server")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    levels = [int(level) for level in args.levels.split(",")]

    with tempfile.TemporaryDirectory(prefix="bench-http-") as scratch:
        data_dir = Path(scratch) / "data"
        weights, manifest = prepare_random_model(data_dir)
        raw = _raw_onnxruntime_batch8(manifest)
        print(f"raw ONNX Runtime, batch 8: {raw:.1f} images/s")

        bodies = distinct_uploads(args.requests * len(levels))
        seed_port = free_port()
        seed = _start_seed(weights, seed_port)
        try:
            with running_service(data_dir) as (ours_port, ours):
                [token] = create_tokens(data_dir, ours_port, ["bench"])
                wait_for_port(seed_port)
                servers = (
                    ("ours", ours_port, ours, "/api/v1/classifications/", {"Authorization": f"Token {token}"}),
                    ("seed-flask", seed_port, seed, "/predict", {}),
                )
                runs: list[Run] = []
                for n, clients in enumerate(levels):
                    chunk = bodies[n * args.requests : (n + 1) * args.requests]
                    for name, port, process, path, headers in servers:
                        runs.append(
                            send_uploads(name, port, path, headers, chunk, clients, process)
                        )
        finally:
            stop(seed)

    report = {
        "machine": {"cpu_count": os.cpu_count(), "torch": torch.__version__},
        "raw_onnxruntime_batch8_images_per_s": raw,
        "runs": [asdict(run) for run in runs],
        "ratios": _ratios(runs, raw),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    _print(report, runs)
    print(f"\nWritten to {args.output}")


def _raw_onnxruntime_batch8(manifest, iterations: int = 20) -> float:
    run = load_runner(manifest, ONNXRUNTIME, None)
    batch = torch.randn(8, 3, 224, 224)
    for _ in range(3):
        run(batch)
    started = time.perf_counter()
    for _ in range(iterations):
        run(batch)
    return 8 * iterations / (time.perf_counter() - started)


def _start_seed(weights: Path, port: int) -> subprocess.Popen:
    return subprocess.Popen(
        # -P: bench/ holds http.py, which must not shadow the standard library for Flask.
        [PYTHON, "-P", str(REPO / "bench" / "seed_flask_app.py"), str(port), str(weights)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _ratios(runs: list[Run], raw: float) -> dict:
    by = {(run.server, run.clients): run for run in runs}
    ratios = {}
    for (server, clients), run in by.items():
        if server != "ours":
            continue
        seed = by.get(("seed-flask", clients))
        ratios[str(clients)] = {
            "ours_over_seed_images_per_s": run.images_per_s / seed.images_per_s if seed else None,
            "ours_over_raw_onnxruntime_batch8": run.images_per_s / raw,
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
    for clients, ratio in report["ratios"].items():
        print(
            f"{clients:>3} clients: ours/seed {ratio['ours_over_seed_images_per_s']:.2f}×, "
            f"ours/raw ONNX Runtime batch 8 {ratio['ours_over_raw_onnxruntime_batch8']:.2f}×"
        )


if __name__ == "__main__":
    main()
