"""The container's health check works in the production configuration README documents:
the Dockerfile's own HEALTHCHECK command, run against a live gunicorn that refuses
requests for other hosts (ALLOWED_HOSTS) and redirects plain http (HTTPS=1)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.live_service import REPO, gunicorn, live_data, request

DOCKERFILE = REPO / "Dockerfile"
HOST = "photos.example.org"
PRODUCTION = {
    "without a proxy header setting": {"ALLOWED_HOSTS": HOST, "HTTPS": "1"},
    "behind the documented proxy": {
        "ALLOWED_HOSTS": HOST,
        "HTTPS": "1",
        "BEHIND_PROXY": "1",
        "CSRF_TRUSTED_ORIGINS": f"https://{HOST}",
    },
}


def dockerfile_instruction(name: str) -> str:
    """The text of the Dockerfile's one `name` instruction, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip().startswith(f"{name} ")]
    assert len(lines) == 1, f"one {name} line expected, found {lines}"
    return lines[0][len(name):].strip()


def healthcheck_command() -> list[str]:
    """The Dockerfile's HEALTHCHECK command, with the image's layout mapped onto this
    checkout: its `python` (the image's venv) is ours, its WORKDIR is the repository."""
    healthcheck = dockerfile_instruction("HEALTHCHECK")
    _, _, command = healthcheck.partition(" CMD ")
    argv = json.loads(command)  # exec form: no shell between Docker and the probe
    workdir = dockerfile_instruction("WORKDIR")
    return [
        sys.executable if arg == "python" else arg.replace(workdir, str(REPO), 1)
        for arg in argv
    ]


def probe(env: dict[str, str]) -> subprocess.CompletedProcess:
    # From another folder than the repository, as Docker may run it.
    return subprocess.run(
        healthcheck_command(), cwd="/", env=env, capture_output=True, text=True, timeout=60
    )


def test_the_dockerfile_health_check_is_the_probe_script_in_exec_form():
    healthcheck = dockerfile_instruction("HEALTHCHECK")

    assert "--timeout=5s" in healthcheck
    assert healthcheck_command() == [sys.executable, str(REPO / "scripts" / "healthcheck")]


@pytest.mark.parametrize("settings_env", PRODUCTION.values(), ids=PRODUCTION.keys())
def test_the_health_check_passes_on_a_production_server_and_fails_once_it_is_down(
    tmp_path, prepared_models_dir, settings_env
):
    with live_data(tmp_path, prepared_models_dir) as data:
        with gunicorn(
            data, workers=1, threads=2, env=settings_env,
            probe_headers={"Host": HOST, "X-Forwarded-Proto": "https"},
        ) as server:
            env = {**data.env, **settings_env, "HOST": server.host, "PORT": str(server.port)}
            # The premise: these settings refuse a request without the right host or
            # scheme, as the old probe sent it.
            assert request(server, "GET", "/api/v1/health/")[0] == 400
            assert request(server, "GET", "/api/v1/health/", headers={"Host": HOST})[0] == 301

            healthy = probe(env)

        down = probe(env)

    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert '"status":"ok"' in healthy.stdout
    assert down.returncode != 0
    assert "no answer" in down.stdout


@contextmanager
def answering(status: int) -> Iterator[int]:
    """A stand-in server on loopback that answers every GET with `status`: a fault."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("status", [503, 301, 400])
def test_the_health_check_fails_on_any_answer_but_200(status):
    with answering(status) as port:
        done = probe({**os.environ, "HOST": "127.0.0.1", "PORT": str(port),
                      "ALLOWED_HOSTS": HOST, "HTTPS": "1"})

    assert done.returncode != 0
    assert f"HTTP {status}" in done.stdout


def test_the_health_check_fails_on_a_bad_setting_with_its_name():
    done = probe({**os.environ, "PORT": "8000", "HTTPS": "maybe"})

    assert done.returncode != 0
    assert "HTTPS must be a boolean" in done.stdout
