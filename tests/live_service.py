"""The real service in other processes: its own data dir, a database those processes can
reach, Django scripts run against it, and gunicorn serving it on a free local port.

The pytest-django test database lives inside this process's transactions and cannot be
shared, so a subprocess gets a database of its own: a file in the data dir on SQLite,
a separate database on the same server on PostgreSQL.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url

from tests.helpers import REPO

SCRIPT_TIMEOUT = 120


@dataclass(frozen=True)
class LiveData:
    env: dict[str, str]
    data_dir: Path

    @property
    def media_root(self) -> Path:
        return self.data_dir / "media"

    def run(self, code: str, *args: str) -> str:
        """Run Python `code` with Django set up against this data; its stdout."""
        script = "import django; django.setup()\n" + code
        done = subprocess.run(
            [sys.executable, "-c", script, *args],
            cwd=REPO, env=self.env, capture_output=True, text=True, timeout=SCRIPT_TIMEOUT,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    def run_json(self, code: str, *args: str):
        """`run`, for code that prints one JSON document as its last line."""
        return json.loads(self.run(code, *args).strip().splitlines()[-1])

    def manage(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=REPO, env=self.env, capture_output=True, text=True, timeout=SCRIPT_TIMEOUT,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout


@contextmanager
def live_data(tmp_path: Path, prepared_models_dir: Path) -> Iterator[LiveData]:
    """A migrated database and a data dir whose models are a copy of the session's."""
    data_dir = tmp_path / "live-data"
    data_dir.mkdir()
    shutil.copytree(prepared_models_dir, data_dir / "models", symlinks=True)
    with _subprocess_database(data_dir) as database_url:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "RECOGNITION_"))},
            "DJANGO_SETTINGS_MODULE": "classifier_site.settings",
            "DATABASE_URL": database_url,
            "RECOGNITION_DATA_DIR": str(data_dir),
            "RECOGNITION_MODELS_DIR": str(data_dir / "models"),
            "MEDIA_ROOT": str(data_dir / "media"),
            "RECOGNITION_TORCH_THREADS": "1",  # two workers on a shared two-core machine
            "SECRET_KEY": "live-test-" + uuid.uuid4().hex,
            "TORCH_HOME": str(tmp_path / "torch-home"),
            "PYTHONUNBUFFERED": "1",
        }
        data = LiveData(env=env, data_dir=data_dir)
        data.run("from django.core.management import call_command\ncall_command('migrate', verbosity=0)")
        yield data


@contextmanager
def _subprocess_database(data_dir: Path) -> Iterator[str]:
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        yield f"sqlite:///{data_dir / 'db.sqlite3'}"
        return
    import psycopg

    config = dj_database_url.parse(url)
    server = {
        "host": config["HOST"] or None,
        "port": config["PORT"] or None,
        "user": config["USER"] or None,
        "password": config["PASSWORD"] or None,
        "dbname": "postgres",
    }
    name = f"live_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(**server, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlsplit(url)._replace(path=f"/{name}").geturl()
    finally:
        with psycopg.connect(**server, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class LiveServer:
    host: str
    port: int
    process: subprocess.Popen
    log: Path

    @property
    def url(self) -> str:  # so tests.cluster.live_cluster.Browser takes a LiveServer too
        return f"http://{self.host}:{self.port}"

    def worker_pids(self) -> list[int]:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in children.read_text().split()]


@contextmanager
def gunicorn(
    data: LiveData, *, workers: int = 2, threads: int = 4, env: dict[str, str] | None = None,
    probe_headers: dict[str, str] | None = None,
) -> Iterator[LiveServer]:
    """gunicorn.conf.py serving `data` on 127.0.0.1, with `env` added to the data's
    environment; killed, with its workers, at the end. The start-up health probe sends
    `probe_headers` (production settings want a known Host and, with HTTPS=1, the
    proxy's X-Forwarded-Proto)."""
    port = free_port()
    env = {**data.env, "HOST": "127.0.0.1", "PORT": str(port),
           "WEB_CONCURRENCY": str(workers), "GUNICORN_THREADS": str(threads), **(env or {})}
    log = data.data_dir / "gunicorn.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"],
            cwd=REPO, env=env, stdout=log_file, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the workers go with it
        )
    server = LiveServer("127.0.0.1", port, process, log)
    try:
        # Start-up took up to 34 s under a CPU hog; this only catches a server that never comes up.
        _wait_until_healthy(server, probe_headers or {}, timeout=300)
        yield server
    finally:
        _stop(process)


def _wait_until_healthy(server: LiveServer, headers: dict[str, str], *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(f"gunicorn exited:\n{server.log.read_text()[-3000:]}")
        try:
            status, _ = request(server, "GET", "/api/v1/health/", headers=headers, timeout=5)
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"gunicorn not healthy in {timeout}s:\n{server.log.read_text()[-3000:]}")


def _stop(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=15)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=15)


@dataclass(frozen=True)
class LiveResponse:
    status: int
    headers: http.client.HTTPMessage  # get_all("Set-Cookie") for repeated headers
    body: bytes


def fetch(
    server: LiveServer, method: str, path: str, *, body: bytes | None = None,
    headers: dict[str, str] | None = None, timeout: float = 120,
) -> LiveResponse:
    """One request on a fresh connection (a "Host" in `headers` replaces the default)."""
    connection = http.client.HTTPConnection(server.host, server.port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return LiveResponse(response.status, response.headers, response.read())
    finally:
        connection.close()


def request(
    server: LiveServer, method: str, path: str, *, body: bytes | None = None,
    headers: dict[str, str] | None = None, timeout: float = 120,
) -> tuple[int, bytes]:
    response = fetch(server, method, path, body=body, headers=headers, timeout=timeout)
    return response.status, response.body


UPLOAD_PATH = "/api/v1/classifications/"


def multipart_image(data: bytes, filename: str) -> tuple[bytes, str]:
    """An API upload's body, multipart/form-data with one "image" part; and its type."""
    boundary = uuid.uuid4().hex
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def upload(
    server: LiveServer, token: str, data: bytes, filename: str, *, timeout: float = 120,
    path: str = UPLOAD_PATH,
) -> tuple[int, dict]:
    """POST an image to the API (at `path`, which may carry a query string to tell
    requests apart in the access log); the status and the JSON body."""
    body, content_type = multipart_image(data, filename)
    status, content = request(
        server, "POST", path, body=body, timeout=timeout,
        headers={"Authorization": f"Token {token}", "Content-Type": content_type},
    )
    try:
        return status, json.loads(content)
    except ValueError:
        return status, {"raw": content[:500].decode(errors="replace")}


IMPORTS_PATH = "/api/v1/imports/"


def multipart_files(files: list[tuple[str, bytes]], field: str = "files") -> tuple[bytes, str]:
    """A multipart/form-data body with one `field` part per (filename, data); its type."""
    boundary = uuid.uuid4().hex
    parts = [
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode() + data + b"\r\n"
        for name, data in files
    ]
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def start_import(server, token: str, files: list[tuple[str, bytes]]) -> tuple[int, dict]:
    """POST the pictures as one bulk import (a LiveServer or a cluster Node); the status
    and the JSON body."""
    body, content_type = multipart_files(files)
    answer = fetch(
        server, "POST", IMPORTS_PATH, body=body,
        headers={"Authorization": f"Token {token}", "Content-Type": content_type},
    )
    return answer.status, json.loads(answer.body)


PHOTO_SIDES = (224, 320, 480)  # shorter sides: the mix of sizes a folder of photos has


def photo_variants(count: int, seed: int) -> list[tuple[str, bytes]]:
    """`count` distinct JPEG variants (filename, bytes) of the real photos bench/photos.py
    takes from matplotlib and scikit-image: each a crop around a random centre, at one of
    several sizes, so an import of them does real decoding and no deduplication."""
    import numpy as np
    from PIL import Image, ImageOps

    from bench.photos import REAL_PHOTOS  # matplotlib and scikit-image: slow to import

    rng = np.random.default_rng(seed)
    sources = [Image.open(path).convert("RGB") for path, _ in REAL_PHOTOS.values()]
    files = []
    for n in range(count):
        side = int(rng.choice(PHOTO_SIDES))
        size = (side * 4 // 3, side) if n % 3 else (side, side * 4 // 3)
        picture = ImageOps.fit(sources[n % len(sources)], size, centering=tuple(rng.random(2)))
        buffer = io.BytesIO()
        picture.save(buffer, "JPEG", quality=int(rng.integers(75, 95)))
        files.append((f"photo-{seed}-{n}.jpg", buffer.getvalue()))
    assert len({data for _, data in files}) == count
    return files
