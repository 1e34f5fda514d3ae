"""The real Celery worker, in its own process, on the broker the settings choose (the
embedded filesystem one, or Redis under scripts/with-redis): `make run`'s Procfile
serves uploads whose thumbnails the worker makes, Ctrl-C stops everything, and a worker
killed mid-task loses nothing and duplicates nothing."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from recognition import storage
from tests.helpers import REPO
from tests.live_service import LiveData, LiveServer, _wait_until_healthy, free_port, live_data, upload
from tests.web_fixtures import image_bytes

pytestmark = pytest.mark.slow

# Waits that only catch a hang: start-up took up to 34 s under a CPU hog (live_service).
HANG = 300

# Steps run in one Django process (each start costs seconds): "upload PATH" as alice,
# "wait SHA256 STATE" until that image's thumbnail is in STATE ("claimed": pending and
# claimed by a worker), printing its state and attempts as one JSON line.
STEPS = """
import json, sys, time
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from recognition.models import StoredImage
from recognition.services import upload_classify

def reached(stored, wanted):
    if wanted == "claimed":
        return stored.thumbnail_state == "pending" and stored.thumbnail_claimed_at is not None
    return stored.thumbnail_state == wanted

steps = iter(sys.argv[1:])
for step in steps:
    if step == "upload":
        user, _ = get_user_model().objects.get_or_create(username="alice")
        with open(next(steps), "rb") as handle:
            upload_classify(user=user, file=SimpleUploadedFile("photo.jpg", handle.read()))
        continue
    sha256, wanted = next(steps), next(steps)
    deadline = time.monotonic() + HANG
    while not reached(stored := StoredImage.objects.filter(sha256=sha256).first() or StoredImage(), wanted):
        assert time.monotonic() < deadline, f"still {stored.thumbnail_state}"
        time.sleep(0.2)
    print(json.dumps({"state": stored.thumbnail_state, "attempts": stored.thumbnail_attempts}))
"""


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def run_steps(data: LiveData, *steps: str) -> list[dict]:
    """The JSON line of each "wait" step."""
    output = data.run(f"HANG = {HANG}\n" + STEPS, *steps)
    return [json.loads(line) for line in output.strip().splitlines() if line.startswith("{")]


def start_worker(data: LiveData, log: Path, **env: str) -> subprocess.Popen:
    with log.open("ab") as log_file:
        return subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "classifier_site", "worker", "--loglevel=INFO"],
            cwd=REPO, env={**data.env, **env}, stdout=log_file, stderr=subprocess.STDOUT,
        )


def process_tree(root: int) -> dict[int, str]:
    """Every live process descended from `root` (and root itself): pid -> command line."""
    parents, commands = {}, {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            command = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if fields[0] != "Z":
            pid = int(stat.parent.name)
            parents[pid], commands[pid] = int(fields[1]), command
    tree, added = {root}, True
    while added:
        children = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= children
        added = bool(children)
    return {pid: commands[pid] for pid in tree if pid in commands}


def alive(pids) -> list[int]:
    alive = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.append(pid)
    return alive


def test_make_run_serves_uploads_whose_thumbnails_the_worker_makes_and_ctrl_c_stops_both(
    tmp_path, prepared_models_dir
):
    with live_data(tmp_path, prepared_models_dir) as data:
        token = data.run(
            "from django.contrib.auth import get_user_model\n"
            "from rest_framework.authtoken.models import Token\n"
            "print(Token.objects.create(user=get_user_model().objects.create_user('alice')).key)"
        ).strip()
        port = free_port()
        env = {**data.env, "HOST": "127.0.0.1", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
        log = tmp_path / "honcho.log"
        with log.open("wb") as log_file:
            # `make run`'s last step, as the Makefile runs it.
            honcho = subprocess.Popen(
                [sys.executable, "-m", "honcho", "start", "-f", "Procfile", "-p", str(port)],
                cwd=REPO, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                start_new_session=True,  # a terminal's foreground group, which Ctrl-C signals
            )
        running: dict[int, str] = {}
        try:
            _wait_until_healthy(LiveServer("127.0.0.1", port, honcho, log), {}, timeout=HANG)
            picture = image_bytes(size=(600, 400), seed=11)
            status, body = upload(LiveServer("127.0.0.1", port, honcho, log), token, picture, "a.jpg")
            assert status == 201, body

            assert run_steps(data, "wait", sha256_of(picture), "ready") == [{"state": "ready", "attempts": 1}]
            running = process_tree(honcho.pid)
            commands = " | ".join(running.values())
            assert "gunicorn" in commands and "celery -A classifier_site worker" in commands, commands

            os.killpg(honcho.pid, signal.SIGINT)  # Ctrl-C
            honcho.wait(timeout=HANG)
            assert alive(running) == [], log.read_text()[-3000:]
        finally:
            for pid in alive({**running, **process_tree(honcho.pid)}):
                os.kill(pid, signal.SIGKILL)
            honcho.wait(timeout=60)


def test_a_worker_killed_mid_thumbnail_loses_nothing_and_the_next_one_makes_it_once(
    tmp_path, prepared_models_dir
):
    """The task is held mid-way without timing: the original of the second image is a
    named pipe, so the worker, having claimed the row, blocks opening it until the test
    puts the real file there, after the kill."""
    made_line = "Thumbnail made for image {}"
    with live_data(tmp_path, prepared_models_dir) as data:
        first, second = (image_bytes(size=(300, 200), seed=seed) for seed in (21, 22))
        first_sha, second_sha = sha256_of(first), sha256_of(second)
        for name, picture in (("first.jpg", first), ("second.jpg", second)):
            (tmp_path / name).write_bytes(picture)
        held = data.media_root / storage.image_name(second_sha, "JPEG")
        held.parent.mkdir(parents=True)
        os.mkfifo(held)  # the upload finds "its file" there and does not write it
        quick = {"RECOGNITION_TASK_STALE_SECONDS": "2", "RECOGNITION_TASK_SWEEP_SECONDS": "1"}
        logs = [tmp_path / "worker-1.log", tmp_path / "worker-2.log"]

        worker = start_worker(data, logs[0], **quick)
        try:
            steps = run_steps(
                data,
                "upload", str(tmp_path / "first.jpg"), "wait", first_sha, "ready",
                "upload", str(tmp_path / "second.jpg"), "wait", second_sha, "claimed",
            )
            assert steps == [{"state": "ready", "attempts": 1}, {"state": "pending", "attempts": 1}]
        finally:
            worker.kill()  # SIGKILL: no clean shutdown, no message handed back
            worker.wait(timeout=60)
        held.unlink()
        held.write_bytes(second)

        worker = start_worker(data, logs[1], **quick)
        try:
            [done, first_again] = run_steps(
                data, "wait", second_sha, "ready", "wait", first_sha, "ready"
            )
        finally:
            worker.terminate()
            worker.wait(timeout=HANG)

        assert done == {"state": "ready", "attempts": 2}  # the killed try and the one that made it
        killed, restarted = (log.read_text() for log in logs)
        assert killed.count(made_line.format(first_sha)) == 1
        assert killed.count(made_line.format(second_sha)) == 0
        assert restarted.count(made_line.format(second_sha)) == 1, restarted[-3000:]
        assert first_again == {"state": "ready", "attempts": 1}  # not made twice
        assert (data.media_root / storage.thumbnail_name(second_sha)).stat().st_size > 0
