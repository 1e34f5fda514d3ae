"""Starting the real service for the HTTP benchmarks, and the loads they send it.

Shared by the benchmarks that start the service or need a prepared model; loopback only.
"""

from __future__ import annotations

import http.client
import io
import os
import secrets
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image

from recognition.engine.manifest import Manifest
from recognition.engine.prepare import prepare

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
REQUEST_TIMEOUT = 120


def prepare_random_model(data_dir: Path) -> tuple[Path, Manifest]:
    """A seeded random-init ResNet-18, saved and prepared into data_dir/models as
    prepare_model would: speed does not depend on the weights' values."""
    data_dir.mkdir(parents=True, exist_ok=True)
    weights = data_dir / "resnet18-random.pth"
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)
    return weights, prepare(data_dir / "models", weights_file=weights, custom=True).manifest


@contextmanager
def running_service(
    data_dir: Path, settings: dict[str, str] | None = None
) -> Iterator[tuple[int, subprocess.Popen]]:
    """The real service on a free loopback port, healthy; stopped afterwards. `settings`
    are environment variables on top of the defaults (gunicorn and service settings)."""
    port = free_port()
    server = start_service(data_dir, port, settings)
    try:
        wait_until_healthy(port)
        yield port, server
    finally:
        stop(server)


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()


_GRADIENT = np.linspace(0, 255, 640 * 480 * 3).reshape(480, 640, 3)


def distinct_jpeg(i: int) -> bytes:
    """Photo-sized (640 × 480) JPEG number i, different from every other."""
    noise = np.random.default_rng(i).integers(0, 40, (480, 640, 3))
    pixels = ((_GRADIENT + noise + i) % 256).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def distinct_upload(i: int) -> tuple[str, bytes]:
    """distinct_jpeg(i) as a multipart body."""
    return multipart(f"photo-{i}.jpg", distinct_jpeg(i))


def distinct_uploads(count: int, start: int = 0) -> list[tuple[str, bytes]]:
    return [distinct_upload(i) for i in range(start, start + count)]


def multipart(filename: str, data: bytes) -> tuple[str, bytes]:
    boundary = secrets.token_hex(16)
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{filename}"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return f"multipart/form-data; boundary={boundary}", body


def server_env(data_dir: Path, port: int, settings: dict[str, str] | None = None) -> dict[str, str]:
    return {
        **os.environ,
        "RECOGNITION_DATA_DIR": str(data_dir),
        "SECRET_KEY": secrets.token_urlsafe(50),
        "DEBUG": "0",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "GUNICORN_ACCESS_LOG": "",
        # Benchmarks upload as fast as they can: lift the per-user abuse limits for them.
        "RECOGNITION_UPLOAD_RATE_BURST": "1000000/min",
        "RECOGNITION_UPLOAD_RATE_SUSTAINED": "1000000/day",
        **(settings or {}),
    }


def start_service(
    data_dir: Path, port: int, settings: dict[str, str] | None = None
) -> subprocess.Popen:
    env = server_env(data_dir, port, settings)
    manage = [PYTHON, str(REPO / "manage.py")]
    subprocess.run([*manage, "migrate", "--noinput", "-v", "0"], env=env, cwd=REPO, check=True)
    return subprocess.Popen(
        [PYTHON, "-m", "gunicorn", "-c", str(REPO / "gunicorn.conf.py")],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
    )


def wait_until_healthy(port: int, timeout: float = 120) -> None:
    """The worker warms its model up before serving, so poll the health endpoint."""
    wait_for_port(port, timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/api/v1/health/")
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the service on port {port} did not become healthy in {timeout}s")


def create_tokens(data_dir: Path, port: int, usernames: list[str]) -> list[str]:
    """A user and an API token for each name, made in the service's own database."""
    script = (
        "import os; from django.contrib.auth.models import User; "
        "from rest_framework.authtoken.models import Token; "
        "[print(Token.objects.create(user=User.objects.create_user(name)).key) "
        "for name in os.environ['BENCH_USERS'].split()]"
    )
    out = subprocess.run(
        [PYTHON, str(REPO / "manage.py"), "shell", "-c", script],
        env={**server_env(data_dir, port), "BENCH_USERS": " ".join(usernames)},
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.split()[-len(usernames) :]


def wait_for_port(port: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def memory_mb(pid: int, field: str = "VmHWM") -> float:
    """Resident memory of a process and its children, summed: VmHWM (each one's peak) or
    VmRSS (now)."""
    total_kb = 0
    for each in [pid, *children(pid)]:
        try:
            for line in Path(f"/proc/{each}/status").read_text().splitlines():
                if line.startswith(f"{field}:"):
                    total_kb += int(line.split()[1])
        except OSError:
            pass
    return total_kb / 1024


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            pass
    return found + [grandchild for child in found for grandchild in children(child)]


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


def send_uploads(name, port, path, headers, bodies, clients, process) -> Run:
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
        peak_rss_mb=memory_mb(process.pid),
    )
