"""REDIS_URL: unset runs on one machine without Redis; set, it must be a Redis URL (else
the process refuses to start with one paragraph naming it, never echoing a password),
and the server must answer (else `manage.py check` and the worker report it)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from classifier_site.env import BadEnvironmentValue, envredis
from recognition.redis_checks import redis_problem
from tests.helpers import REPO


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(command: list[str], tmp_path, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("RECOGNITION_")}
    return subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=120,
        env={**environment, "RECOGNITION_DATA_DIR": str(tmp_path), **env},
    )


@pytest.mark.parametrize(
    "value",
    ["redis://127.0.0.1:6379/0", "rediss://:secret@cache.example:6380/2", "unix:///run/redis.sock"],
)
def test_a_redis_url_is_accepted(monkeypatch, value):
    monkeypatch.setenv("REDIS_URL", value)
    assert envredis("REDIS_URL") == value


def test_no_redis_url_means_no_redis(monkeypatch):
    monkeypatch.delenv("REDIS_URL", raising=False)
    assert envredis("REDIS_URL") == ""


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("http://:hunter2@cache.example:6379/0", "has scheme http"),
        ("cache.example:6379", "has scheme cache.example"),
        ("redis://:hunter2@cache.example:port/0", "has a bad port"),
        ("redis://:hunter2@/0", "names no host"),
        ("redis://:hunter2@cache.example:6379/cache", "a database number such as /0"),
    ],
)
def test_a_malformed_redis_url_is_refused_with_a_paragraph_naming_it(monkeypatch, value, reason):
    monkeypatch.setenv("REDIS_URL", value)

    with pytest.raises(BadEnvironmentValue) as refused:
        envredis("REDIS_URL")

    message = str(refused.value)
    assert message.startswith("REDIS_URL must be a Redis URL such as redis://")
    assert reason in message
    assert "hunter2" not in message


def test_an_unreachable_redis_is_described_without_its_password():
    problem = redis_problem(f"redis://:hunter2@127.0.0.1:{closed_port()}/0")

    assert problem.startswith("REDIS_URL: no Redis server answers at 127.0.0.1:")
    assert "hunter2" not in problem


def test_manage_py_check_reports_an_unreachable_redis(tmp_path):
    result = run([sys.executable, "manage.py", "check"], tmp_path,
                 REDIS_URL=f"redis://127.0.0.1:{closed_port()}/0")

    assert result.returncode != 0
    assert "REDIS_URL: no Redis server answers at 127.0.0.1:" in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_the_worker_refuses_to_start_on_a_malformed_redis_url(tmp_path):
    result = run([sys.executable, "-m", "celery", "-A", "classifier_site", "worker"], tmp_path,
                 REDIS_URL="http://:hunter2@cache.example/0")

    assert result.returncode != 0
    assert result.stderr.startswith("celery worker cannot start:")
    assert "REDIS_URL must be a Redis URL" in result.stderr
    assert "Traceback" not in result.stderr
    assert "hunter2" not in result.stderr
