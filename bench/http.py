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
import http.client  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import secrets  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict, dataclass  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402
from PIL import Image  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from recognition.engine.backends import ONNXRUNTIME, load_runner  # noqa: E402
from recognition.engine.prepare import prepare  # noqa: E402

RESULTS = REPO / "bench" / "results" / "http.json"
PYTHON = sys.executable
REQUEST_TIMEOUT = 120


@dataclass(frozen=True)
class Run:
    server: str
    clients: int
    requests: int
    errors: int
    seconds: float
    images_per_s: float
    p50_ms: float
    p95_ms: float
    max_ms: float
    peak_rss_mb: float


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", default="1,8,20", help="concurrent clients, comma-separated")
    parser.add_argument("--requests", type=int, default=120, help="uploads per level and server")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    levels = [int(level) for level in args.levels.split(",")]

    with tempfile.TemporaryDirectory(prefix="bench-http-") as scratch:
        scratch = Path(scratch)
        weights = scratch / "resnet18-random.pth"
        torch.manual_seed(0)
        torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)
        data_dir = scratch / "data"
        manifest = prepare(data_dir / "models", weights_file=weights, custom=True).manifest
        raw = _raw_onnxruntime_batch8(manifest)
        print(f"raw ONNX Runtime, batch 8: {raw:.1f} images/s")

        bodies = _distinct_uploads(args.requests * len(levels))
        ours_port, seed_port = _free_port(), _free_port()
        ours = _start_ours(data_dir, ours_port)
        seed = _start_seed(weights, seed_port)
        try:
            token = _wait_for_ours(ours_port, data_dir)
            _wait_for_port(seed_port)
            runs: list[Run] = []
            for n, clients in enumerate(levels):
                chunk = bodies[n * args.requests : (n + 1) * args.requests]
                for name, port, process, path, headers in (
                    ("ours", ours_port, ours, "/api/v1/classifications/", {"Authorization": f"Token {token}"}),
                    ("seed-flask", seed_port, seed, "/predict", {}),
                ):
                    runs.append(_load(name, port, path, headers, chunk, clients, process))
        finally:
            for process in (ours, seed):
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()

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


def _distinct_uploads(count: int) -> list[tuple[str, bytes]]:
    """Photo-sized JPEGs, each different, as ready-made multipart bodies."""
    rng = np.random.default_rng(7)
    base = np.linspace(0, 255, 640 * 480 * 3).reshape(480, 640, 3)
    uploads = []
    for i in range(count):
        noise = rng.integers(0, 40, (480, 640, 3))
        pixels = ((base + noise + i) % 256).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, "JPEG", quality=85)
        uploads.append(_multipart(f"photo-{i}.jpg", buffer.getvalue()))
    return uploads


def _multipart(filename: str, data: bytes) -> tuple[str, bytes]:
    boundary = secrets.token_hex(16)
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{filename}"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return f"multipart/form-data; boundary={boundary}", body


def _server_env(data_dir: Path, port: int) -> dict[str, str]:
    return {
        **os.environ,
        "RECOGNITION_DATA_DIR": str(data_dir),
        "SECRET_KEY": secrets.token_urlsafe(50),
        "DEBUG": "0",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "GUNICORN_ACCESS_LOG": "",
        # The benchmark is one user uploading fast: lift the abuse limits for it.
        "RECOGNITION_UPLOAD_RATE_BURST": "1000000/min",
        "RECOGNITION_UPLOAD_RATE_SUSTAINED": "1000000/day",
    }


def _start_ours(data_dir: Path, port: int) -> subprocess.Popen:
    env = _server_env(data_dir, port)
    manage = [PYTHON, str(REPO / "manage.py")]
    subprocess.run([*manage, "migrate", "--noinput", "-v", "0"], env=env, cwd=REPO, check=True)
    return subprocess.Popen(
        [PYTHON, "-m", "gunicorn", "-c", str(REPO / "gunicorn.conf.py")],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
    )


def _wait_for_ours(port: int, data_dir: Path) -> str:
    _wait_for_port(port)
    env = _server_env(data_dir, port)
    script = (
        "from django.contrib.auth.models import User; "
        "from rest_framework.authtoken.models import Token; "
        "user = User.objects.create_user('bench'); "
        "print(Token.objects.create(user=user).key)"
    )
    out = subprocess.run(
        [PYTHON, str(REPO / "manage.py"), "shell", "-c", script],
        env=env,
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # warm-up happens before the first request
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/api/v1/health/")
            if connection.getresponse().status == 200:
                break
        except OSError:
            pass
        time.sleep(0.5)
    return out.stdout.strip().splitlines()[-1]


def _start_seed(weights: Path, port: int) -> subprocess.Popen:
    return subprocess.Popen(
        # -P: bench/ holds http.py, which must not shadow the standard library for Flask.
        [PYTHON, "-P", str(REPO / "bench" / "seed_flask_app.py"), str(port), str(weights)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _wait_for_port(port: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _load(name, port, path, headers, bodies, clients, process) -> Run:
    """`clients` threads send the bodies, one request at a time each, until none is left."""
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    queue = list(reversed(bodies))

    def client() -> None:
        nonlocal errors
        while True:
            with lock:
                if not queue:
                    return
                content_type, body = queue.pop()
            started = time.perf_counter()
            ok = False
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT)
                connection.request("POST", path, body, {**headers, "Content-Type": content_type})
                response = connection.getresponse()
                response.read()
                ok = 200 <= response.status < 300
                connection.close()
            except OSError:
                pass
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                errors += not ok

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    ms = sorted(latency * 1000 for latency in latencies)
    return Run(
        server=name,
        clients=clients,
        requests=len(bodies),
        errors=errors,
        seconds=seconds,
        images_per_s=len(bodies) / seconds,
        p50_ms=statistics.median(ms),
        p95_ms=ms[max(0, int(round(0.95 * len(ms))) - 1)],
        max_ms=ms[-1],
        peak_rss_mb=_peak_rss_mb(process.pid),
    )


def _peak_rss_mb(pid: int) -> float:
    """Sum of the peak resident memory (VmHWM) of a process and its children."""
    total_kb = 0
    for each in [pid, *_children(pid)]:
        try:
            for line in Path(f"/proc/{each}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total_kb += int(line.split()[1])
        except OSError:
            pass
    return total_kb / 1024


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            pass
    return found + [grandchild for child in found for grandchild in _children(child)]


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
