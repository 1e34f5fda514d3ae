"""The cluster's throughput against one node's, on the same servers, in one run.

    scripts/with-cluster --set RECOGNITION_UPLOAD_RATE_BURST=1000000/min \
        --set RECOGNITION_UPLOAD_RATE_SUSTAINED=1000000/day \
        .venv/bin/python -m bench.cluster [--clients 8] [--requests 80] [--rounds 3]

Inside scripts/with-cluster (two gunicorn nodes, one Celery worker, PostgreSQL, Redis and
SeaweedFS, all on this machine): each round sends the same number of distinct 640 × 480
JPEG uploads from the same number of clients, first all to node A ("one node"), then
alternating between node A and node B ("two nodes"); the medians over the rounds are
reported. Every upload is hashed, classified, stored in the object store and recorded in
PostgreSQL, and queues a thumbnail for the worker, which shares the same cores.

Prints a table and writes bench/results/cluster.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

from bench.serving import distinct_uploads

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "cluster.json"
REQUEST_TIMEOUT = 120


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    parser.add_argument("--requests", type=int, default=80, help="uploads per layout and round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (medians are reported)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    if "NODE_A_URL" not in os.environ:
        sys.exit("bench.cluster runs inside scripts/with-cluster (see its docstring).")
    nodes = [os.environ["NODE_A_URL"], os.environ["NODE_B_URL"]]
    token = _token()

    layouts = {"one node": nodes[:1], "two nodes": nodes}
    runs: dict[str, list[dict]] = {name: [] for name in layouts}
    start = 0
    for _ in range(args.rounds):
        for name, targets in layouts.items():
            bodies = distinct_uploads(args.requests, start=start)
            start += args.requests
            runs[name].append(_send(targets, token, bodies, args.clients))

    summary = {
        name: {
            "images_per_s": statistics.median(r["images_per_s"] for r in rounds),
            "p50_ms": statistics.median(r["p50_ms"] for r in rounds),
            "p95_ms": statistics.median(r["p95_ms"] for r in rounds),
            "errors": sum(r["errors"] for r in rounds),
        }
        for name, rounds in runs.items()
    }
    print(f"{args.clients} clients, {args.requests} uploads per layout and round, "
          f"{args.rounds} rounds, {os.cpu_count()} cores; medians:")
    print("| layout | images/s | p50 ms | p95 ms | errors |")
    print("| --- | --- | --- | --- | --- |")
    for name, row in summary.items():
        print(f"| {name} | {row['images_per_s']:.1f} | {row['p50_ms']:.0f} | "
              f"{row['p95_ms']:.0f} | {row['errors']} |")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({
        "clients": args.clients, "requests": args.requests, "rounds": args.rounds,
        "cores": os.cpu_count(), "summary": summary, "runs": runs,
    }, indent=2))
    print(f"wrote {args.output.relative_to(REPO)}")


def _token() -> str:
    """A user and its API token in the cluster's database, made as an operator would."""
    code = (
        "import uuid; from django.contrib.auth.models import User; "
        "from rest_framework.authtoken.models import Token; "
        "print(Token.objects.create(user=User.objects.create_user('bench-' + uuid.uuid4().hex[:8])).key)"
    )
    cluster = json.loads((Path(os.environ["CLUSTER_DIR"]) / "cluster.json").read_text())
    env = {**cluster["nodes"]["worker"]["env"],
           "RECOGNITION_DATA_DIR": os.path.join(os.environ["CLUSTER_DIR"], "operator")}
    done = subprocess.run([sys.executable, "manage.py", "shell", "-c", code], cwd=REPO, env=env,
                          capture_output=True, text=True, check=True)
    return done.stdout.split()[-1]


def _send(targets: list[str], token: str, bodies: list[tuple[str, bytes]], clients: int) -> dict:
    """`clients` threads send the bodies, request i to targets[i % len(targets)]."""
    queue = list(enumerate(bodies))
    queue.reverse()
    latencies, errors, lock = [], 0, threading.Lock()

    def client() -> None:
        nonlocal errors
        while True:
            with lock:
                if not queue:
                    return
                i, (content_type, body) = queue.pop()
            url = urllib.parse.urlsplit(targets[i % len(targets)])
            started = time.perf_counter()
            ok = False
            try:
                connection = http.client.HTTPConnection(url.hostname, url.port, timeout=REQUEST_TIMEOUT)
                connection.request("POST", "/api/v1/classifications/", body,
                                   {"Authorization": f"Token {token}", "Content-Type": content_type})
                response = connection.getresponse()
                response.read()
                ok = response.status == 201
                connection.close()
            except OSError:
                pass
            with lock:
                latencies.append(time.perf_counter() - started)
                errors += not ok

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    ms = sorted(latency * 1000 for latency in latencies)
    return {
        "targets": len(targets), "requests": len(bodies), "errors": errors, "seconds": seconds,
        "images_per_s": len(bodies) / seconds, "p50_ms": statistics.median(ms),
        "p95_ms": ms[max(0, round(0.95 * len(ms)) - 1)],
    }


if __name__ == "__main__":
    main()
