"""A process given a configuration it cannot work with refuses to start with one paragraph
naming the variable and the fix, never a traceback, and never echoes a password."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.helpers import REPO


def run(command: list[str], **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        command, cwd=REPO, env={**os.environ, **env}, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("not-a-url", "Scheme '://' is unknown"),
        ("mysql://user:hunter2@db.example/recognition", "scheme mysql is not supported"),
        ("postgres://user:hunter2@db.example:port/recognition", "not a valid url"),
        ("postgres://user:hunter2@/", "names no host or no database"),
    ],
)
def test_a_bad_database_url_stops_manage_py_with_a_paragraph_naming_it(tmp_path, value, reason):
    result = run([sys.executable, "manage.py", "check"], DATABASE_URL=value,
                 RECOGNITION_DATA_DIR=str(tmp_path))
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("manage.py cannot start: DATABASE_URL must be a database URL")
    assert reason in result.stderr
    assert "hunter2" not in result.stderr


def test_gunicorn_refuses_to_start_on_a_bad_variable_before_forking_workers(tmp_path):
    result = run(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"],
        DATABASE_URL="mysql://user:hunter2@db.example/recognition",
        RECOGNITION_DATA_DIR=str(tmp_path), PORT="1",
    )
    assert result.returncode != 0
    assert "gunicorn cannot start:" in result.stderr
    assert "scheme mysql is not supported" in result.stderr
    assert "Booting worker" not in result.stderr
    assert "Traceback" not in result.stderr
    assert "hunter2" not in result.stderr
