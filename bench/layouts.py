"""Which serving layout suits this machine: gunicorn workers × request threads × model
threads, measured through the real service.

    .venv/bin/python -m bench.layouts [--single 40] [--concurrent 160]

Each layout starts the service (gunicorn, production settings, SQLite, a random-init
ResNet-18 on ONNX Runtime) with its settings, then sends distinct 640 × 480 JPEG uploads:
first from 1 client, then from 8 at once. A layout is:
- workers: gunicorn processes (WEB_CONCURRENCY), each with its own copy of the model;
- threads: request threads per process (GUNICORN_THREADS);
- intra-op: threads one forward pass uses (RECOGNITION_TORCH_THREADS);
- runners: forward passes one process runs at once (RECOGNITION_BATCH_RUNNERS).
workers × runners × intra-op is the number of cores inference asks for at full load.

Prints a table and writes bench/results/layouts.json.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.serving import (
    create_tokens,
    distinct_uploads,
    prepare_random_model,
    running_service,
    send_uploads,
)

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "layouts.json"
API = "/api/v1/classifications/"


@dataclass(frozen=True)
class Layout:
    workers: int
    threads: int
    intra_op: int
    runners: int

    @property
    def name(self) -> str:
        return f"{self.workers}w × {self.threads}t, {self.runners} runner × {self.intra_op} intra"

    def settings(self) -> dict[str, str]:
        return {
            "WEB_CONCURRENCY": str(self.workers),
            "GUNICORN_THREADS": str(self.threads),
            "RECOGNITION_TORCH_THREADS": str(self.intra_op),
            "RECOGNITION_BATCH_RUNNERS": str(self.runners),
        }


LAYOUTS = (
    Layout(workers=1, threads=4, intra_op=2, runners=1),
    Layout(workers=1, threads=8, intra_op=2, runners=1),
    Layout(workers=1, threads=8, intra_op=1, runners=1),
    Layout(workers=1, threads=8, intra_op=1, runners=2),
    Layout(workers=1, threads=8, intra_op=2, runners=2),
    Layout(workers=2, threads=4, intra_op=1, runners=1),
    Layout(workers=2, threads=4, intra_op=2, runners=1),
)


@dataclass(frozen=True)
class Measured:
    layout: str
    settings: dict[str, str]
    single_p50_ms: float
    single_images_per_s: float
    concurrent_images_per_s: float
    concurrent_p50_ms: float
    concurrent_p95_ms: float
    errors: int
    peak_rss_mb: float


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--single", type=int, default=40, help="uploads from 1 client")
    parser.add_argument("--concurrent", type=int, default=160, help="uploads from 8 clients")
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()

    per_layout = args.single + args.concurrent
    bodies = distinct_uploads(per_layout * len(LAYOUTS))
    measured: list[Measured] = []
    with tempfile.TemporaryDirectory(prefix="bench-layouts-") as scratch:
        for n, layout in enumerate(LAYOUTS):
            data_dir = Path(scratch) / f"layout-{n}"
            prepare_random_model(data_dir)
            mine = bodies[n * per_layout : (n + 1) * per_layout]
            measured.append(_measure(layout, data_dir, mine[: args.single], mine[args.single :],
                                     args.clients))
            _print_row(measured[-1])

    best = max(measured, key=lambda m: m.concurrent_images_per_s)
    report = {
        "cpu_count": os.cpu_count(),
        "clients": args.clients,
        "layouts": [asdict(m) for m in measured],
        "fastest_under_load": best.layout,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nFastest at {args.clients} clients: {best.layout}")
    print(f"Written to {RESULTS}")


def _measure(layout: Layout, data_dir: Path, single: list, concurrent: list, clients: int):
    with running_service(data_dir, layout.settings()) as (port, server):
        [token] = create_tokens(data_dir, port, ["bench"])
        headers = {"Authorization": f"Token {token}"}
        send_uploads(layout.name, port, API, headers, single[:4], 1, server)  # warm up
        alone = send_uploads(layout.name, port, API, headers, single[4:], 1, server)
        loaded = send_uploads(layout.name, port, API, headers, concurrent, clients, server)
    return Measured(
        layout=layout.name,
        settings=layout.settings(),
        single_p50_ms=alone.p50_ms,
        single_images_per_s=alone.images_per_s,
        concurrent_images_per_s=loaded.images_per_s,
        concurrent_p50_ms=loaded.p50_ms,
        concurrent_p95_ms=loaded.p95_ms,
        errors=alone.errors + loaded.errors,
        peak_rss_mb=loaded.peak_rss_mb,
    )


_printed_header = False


def _print_row(m: Measured) -> None:
    global _printed_header
    if not _printed_header:
        print(
            f"{'layout':<34} {'1 client p50':>12} {'8 clients img/s':>15} {'p50 ms':>7} "
            f"{'p95 ms':>7} {'errors':>6} {'peak RSS MB':>11}"
        )
        _printed_header = True
    print(
        f"{m.layout:<34} {m.single_p50_ms:>12.1f} {m.concurrent_images_per_s:>15.1f} "
        f"{m.concurrent_p50_ms:>7.1f} {m.concurrent_p95_ms:>7.1f} {m.errors:>6} "
        f"{m.peak_rss_mb:>11.0f}"
    )


if __name__ == "__main__":
    main()
