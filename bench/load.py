"""Sustained mixed traffic against the real service, loopback only, bounded in time.

    .venv/bin/python -m bench.load [--minutes 10] [--clients 8] [--users 4]

Starts the service as production runs it (gunicorn, gunicorn.conf.py, DEBUG off,
SQLite, a random-init ResNet-18 prepared by prepare_model) on 127.0.0.1, then `clients`
threads, each acting for one of `users` token-holding users, send requests back to back
until the time is up: new uploads (every one a distinct image), repeats of their own
earlier uploads, history pages and detail pages. It stops by itself and reports the
rate, latency percentiles, errors, and the server's memory at the start and the end.
Prints a table and writes bench/results/load.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from bench.serving import (
    create_tokens,
    distinct_upload,
    distinct_uploads,
    memory_mb,
    prepare_random_model,
    running_service,
)

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "load.json"
REQUEST_TIMEOUT = 60
# The mix: what a person using the site does, roughly.
ACTIONS = {"upload": 4, "repeat": 2, "history": 2, "detail": 2}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--users", type=int, default=4)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    duration = args.minutes * 60

    with tempfile.TemporaryDirectory(prefix="bench-load-") as scratch:
        data_dir = Path(scratch) / "data"
        prepare_random_model(data_dir)
        with running_service(data_dir) as (port, server):
            tokens = create_tokens(data_dir, port, [f"load{i}" for i in range(args.users)])
            memory_start = memory_mb(server.pid, "VmRSS")
            stats = _drive(port, tokens, args.clients, duration)
            memory_end = memory_mb(server.pid, "VmRSS")
            memory_peak = memory_mb(server.pid, "VmHWM")

    report = _report(stats, duration, args, memory_start, memory_end, memory_peak)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    _print(report)
    print(f"\nWritten to {args.output}")
    if report["errors"]:
        sys.exit(1)


class _Client:
    def __init__(self, port: int, token: str, uploads: _Images):
        self.port, self.headers = port, {"Authorization": f"Token {token}"}
        self.uploads = uploads
        self.mine: list[tuple[int, tuple[str, bytes]]] = []  # (upload id, body)

    def request(self, method: str, path: str, body=None, content_type=None):
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=REQUEST_TIMEOUT)
        headers = dict(self.headers)
        if content_type:
            headers["Content-Type"] = content_type
        try:
            connection.request(method, path, body, headers)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def act(self, action: str) -> tuple[str, int]:
        """Do `action` (an upload, until there is something to repeat or look at);
        return what was done and the status."""
        if action == "repeat" and self.mine:
            _, (content_type, body) = random.choice(self.mine)
            return action, self.request("POST", "/api/v1/classifications/", body, content_type)[0]
        if action == "detail" and self.mine:
            upload_id, _ = random.choice(self.mine)
            return action, self.request("GET", f"/api/v1/classifications/{upload_id}/")[0]
        if action == "history":
            return action, self.request("GET", "/api/v1/classifications/?page=1")[0]
        upload = self.uploads.next()
        status, payload = self.request("POST", "/api/v1/classifications/", upload[1], upload[0])
        if status == 201:
            self.mine.append((json.loads(payload)["id"], upload))
        return "upload", status


class _Images:
    """Distinct uploads: made before the clock starts, more made on demand if a fast
    machine uses them all up."""

    def __init__(self, ready: int):
        self.ready, self.lock, self.made = distinct_uploads(ready), threading.Lock(), ready

    def next(self) -> tuple[str, bytes]:
        with self.lock:
            if self.ready:
                return self.ready.pop()
            self.made += 1
            number = self.made
        return distinct_upload(number)


def _drive(port: int, tokens: list[str], clients: int, duration: float) -> dict:
    uploads = _Images(ready=min(int(duration * 10), 3000))
    lock = threading.Lock()
    latencies: dict[str, list[float]] = defaultdict(list)
    statuses: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    deadline = time.monotonic() + duration
    actions, weights = list(ACTIONS), list(ACTIONS.values())

    def run(token: str) -> None:
        client = _Client(port, token, uploads)
        while time.monotonic() < deadline:
            action = random.choices(actions, weights)[0]
            started = time.perf_counter()
            try:
                action, status = client.act(action)
            except OSError:
                status = 0  # no answer at all
            elapsed = time.perf_counter() - started
            with lock:
                latencies[action].append(elapsed)
                statuses[action][status] += 1

    threads = [
        threading.Thread(target=run, args=(tokens[i % len(tokens)],)) for i in range(clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"latencies": latencies, "statuses": statuses}


def _report(stats, duration, args, memory_start, memory_end, memory_peak) -> dict:
    everything = [s for values in stats["latencies"].values() for s in values]
    per_action = {}
    errors = 0
    for action, seconds in stats["latencies"].items():
        ms = np.array(seconds) * 1000
        codes = dict(stats["statuses"][action])
        failed = sum(n for code, n in codes.items() if not 200 <= code < 300)
        errors += failed
        per_action[action] = {
            "requests": len(seconds),
            "errors": failed,
            "statuses": {str(code): n for code, n in sorted(codes.items())},
            "p50_ms": float(np.percentile(ms, 50)),
            "p95_ms": float(np.percentile(ms, 95)),
        }
    all_ms = np.array(everything) * 1000
    return {
        "minutes": args.minutes,
        "clients": args.clients,
        "users": args.users,
        "requests": len(everything),
        "requests_per_s": len(everything) / duration,
        "errors": errors,
        "p50_ms": float(np.percentile(all_ms, 50)),
        "p95_ms": float(np.percentile(all_ms, 95)),
        "server_rss_mb_start": memory_start,
        "server_rss_mb_end": memory_end,
        "server_peak_rss_mb": memory_peak,
        "actions": per_action,
    }


def _print(report: dict) -> None:
    print(
        f"{report['minutes']:g} min, {report['clients']} clients, {report['users']} users: "
        f"{report['requests']} requests, {report['requests_per_s']:.1f}/s, "
        f"{report['errors']} errors, p50 {report['p50_ms']:.0f} ms, p95 {report['p95_ms']:.0f} ms"
    )
    print(f"{'action':<8} {'requests':>8} {'errors':>6} {'p50 ms':>8} {'p95 ms':>8}  statuses")
    for action, row in report["actions"].items():
        print(
            f"{action:<8} {row['requests']:>8} {row['errors']:>6} {row['p50_ms']:>8.0f} "
            f"{row['p95_ms']:>8.0f}  {row['statuses']}"
        )
    print(
        f"server memory (RSS, all processes): {report['server_rss_mb_start']:.0f} MB at the "
        f"start, {report['server_rss_mb_end']:.0f} MB at the end, "
        f"peak {report['server_peak_rss_mb']:.0f} MB"
    )


if __name__ == "__main__":
    main()
