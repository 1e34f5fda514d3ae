"""Does the service's memory stay flat? 2000 distinct-image uploads, RSS sampled.

    .venv/bin/python -m bench.soak [--requests 2000] [--clients 4]

Starts the real service (gunicorn, production settings, SQLite, a random-init ResNet-18)
on 127.0.0.1 and reads the resident memory of all its processes after a first upload;
then `warmup` distinct uploads from `clients` threads, so that first-use allocations of
concurrent requests are made; then the soak proper: `requests` more distinct uploads
from `clients` threads, with memory read at its start, middle and end. Growth is
reported from the start of the soak and, for comparison, from the first upload.
Prints a table and writes bench/results/soak.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import tempfile
import threading
from pathlib import Path

from bench.serving import (
    create_tokens,
    distinct_upload,
    memory_mb,
    prepare_random_model,
    running_service,
)

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "soak.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=100, help="uploads before the start")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-soak-") as scratch:
        data_dir = Path(scratch) / "data"
        prepare_random_model(data_dir)
        with running_service(data_dir) as (port, server):
            [token] = create_tokens(data_dir, port, ["soak"])
            samples, errors = _soak(
                port, token, args.requests, args.clients, args.warmup, server.pid
            )

    start, end = samples["start"], samples["end"]
    report = {
        "requests": args.requests,
        "clients": args.clients,
        "errors": errors,
        "rss_mb": samples,
        "growth_percent": (end - start) / start * 100,
        "growth_from_first_upload_percent": (end - samples["after_first_upload"])
        / samples["after_first_upload"]
        * 100,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'moment':<18} {'server RSS MB':>14}")
    for moment, mb in samples.items():
        print(f"{moment:<18} {mb:>14.0f}")
    print(
        f"{args.requests} distinct uploads after {args.warmup} of warm-up, {errors} errors; "
        f"RSS growth start -> end: {report['growth_percent']:+.1f} % "
        f"(from the first upload: {report['growth_from_first_upload_percent']:+.1f} %)"
    )
    print(f"\nWritten to {args.output}")
    if errors:
        sys.exit(1)


def _soak(port: int, token: str, requests: int, clients: int, warmup: int, pid: int):
    headers = {"Authorization": f"Token {token}"}
    lock = threading.Lock()
    state = {"next": 1, "done": 0, "errors": 0}
    samples: dict[str, float] = {}

    def upload(number: int) -> bool:
        content_type, body = distinct_upload(number)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            connection.request(
                "POST", "/api/v1/classifications/", body, {**headers, "Content-Type": content_type}
            )
            response = connection.getresponse()
            response.read()
            return response.status == 201
        except OSError:
            return False
        finally:
            connection.close()

    def client(last: int, middle: int | None) -> None:
        while True:
            with lock:
                if state["next"] > last:
                    return
                number = state["next"]
                state["next"] += 1
            ok = upload(number)
            with lock:
                state["done"] += 1
                state["errors"] += not ok
                if state["done"] == middle:
                    samples["middle"] = memory_mb(pid, "VmRSS")

    def run(count: int, middle: int | None = None) -> None:
        last = state["next"] + count - 1
        threads = [threading.Thread(target=client, args=(last, middle)) for _ in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    # Lazy allocations are not growth: those of a first upload (thumbnail, database
    # caches), then those of the first concurrent ones (request threads, batch buffers).
    state["errors"] += not upload(0)
    samples["after_first_upload"] = memory_mb(pid, "VmRSS")
    run(warmup)
    state["done"] = 0
    samples["start"] = memory_mb(pid, "VmRSS")
    run(requests, middle=requests // 2)
    samples["end"] = memory_mb(pid, "VmRSS")
    return samples, state["errors"]


if __name__ == "__main__":
    main()
