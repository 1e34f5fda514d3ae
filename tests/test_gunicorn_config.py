"""gunicorn.conf.py reads its environment with the site's typed helpers: a bad value stops
gunicorn with one line naming the variable."""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "gunicorn.conf.py"
GUNICORN_VARIABLES = (
    "HOST", "PORT", "WEB_CONCURRENCY", "GUNICORN_THREADS", "GUNICORN_TIMEOUT",
    "GUNICORN_MAX_REQUESTS", "GUNICORN_ACCESS_LOG",
)


@pytest.fixture
def clean_env(monkeypatch):
    for name in GUNICORN_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def check_config(**env: str) -> subprocess.CompletedProcess:
    """`gunicorn -c gunicorn.conf.py --check-config` with these variables set."""
    base = {k: v for k, v in os.environ.items() if k not in GUNICORN_VARIABLES}
    return subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--check-config"],
        cwd=REPO, env={**base, **env}, capture_output=True, text=True, timeout=120,
    )


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("GUNICORN_THREADS", "abc", "GUNICORN_THREADS must be a whole number, not 'abc'"),
        ("PORT", "http", "PORT must be a whole number, not 'http'"),
        ("WEB_CONCURRENCY", "0", "WEB_CONCURRENCY must be at least 1, not 0"),
        ("GUNICORN_TIMEOUT", "-1", "GUNICORN_TIMEOUT must be at least 0, not -1"),
        ("GUNICORN_MAX_REQUESTS", "many", "GUNICORN_MAX_REQUESTS must be a whole number, not 'many'"),
    ],
)
def test_gunicorn_refuses_a_bad_value_with_one_line_naming_the_variable(variable, value, message):
    done = check_config(**{variable: value})

    assert done.returncode != 0
    assert done.stderr.strip() == f"gunicorn.conf.py: {message}"


def test_gunicorn_itself_refuses_a_web_concurrency_that_is_not_a_number():
    # gunicorn parses WEB_CONCURRENCY when it is imported, before it reads any config
    # file, so this one value is refused with gunicorn's own traceback, not our line.
    done = check_config(WEB_CONCURRENCY="abc")

    assert done.returncode != 0
    assert "WEB_CONCURRENCY" in done.stderr


def test_the_config_takes_its_values_from_the_environment(clean_env):
    clean_env.setenv("HOST", "0.0.0.0")
    clean_env.setenv("PORT", "9123")
    clean_env.setenv("WEB_CONCURRENCY", "2")
    clean_env.setenv("GUNICORN_THREADS", "3")
    clean_env.setenv("GUNICORN_TIMEOUT", "0")
    clean_env.setenv("GUNICORN_MAX_REQUESTS", "500")
    clean_env.setenv("GUNICORN_ACCESS_LOG", "")

    config = runpy.run_path(str(CONFIG))

    assert config["bind"] == "0.0.0.0:9123"
    assert (config["workers"], config["threads"]) == (2, 3)
    assert (config["timeout"], config["max_requests"]) == (0, 500)
    assert config["accesslog"] is None


def test_the_defaults_are_one_worker_with_eight_threads_on_loopback(clean_env):
    config = runpy.run_path(str(CONFIG))

    assert config["bind"] == "127.0.0.1:8000"
    assert (config["workers"], config["threads"]) == (1, 8)
    assert (config["timeout"], config["max_requests"]) == (60, 0)
    assert config["accesslog"] == "-"
