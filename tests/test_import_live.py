"""Bulk import against the real processes: gunicorn takes the pictures, a real Celery
worker classifies them, and a second client follows the import over HTTP while it runs,
cancels it, or watches it survive its worker being SIGKILLed."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.cluster.live_cluster import Browser, User, poll
from tests.live_service import (
    IMPORTS_PATH, LiveData, LiveServer, fetch, gunicorn, live_data, photo_variants, start_import,
)
from tests.test_worker import HANG, start_worker

pytestmark = pytest.mark.slow

PICTURES = 32
BATCH = 4  # RECOGNITION_MAX_BATCH of the worker: eight batches, so eight progress writes
WORKER_ENV = {
    "RECOGNITION_MAX_BATCH": str(BATCH),
    # A restarted worker takes over the dead one's import within seconds, not a minute;
    # not much shorter, or a claim renewed late under load looks abandoned and the sweep
    # floods the queue with thumbnails it already sent.
    "RECOGNITION_TASK_STALE_SECONDS": "8",
    "RECOGNITION_TASK_SWEEP_SECONDS": "2",
}
FINISHED = {"done", "failed", "cancelled"}
USERS = ("alice", "bob", "carol")
PASSWORD = "correct horse battery staple"

MAKE_USERS = """
import json, sys
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
tokens = {}
for name in sys.argv[2:]:
    user = get_user_model().objects.create_user(name, password=sys.argv[1])
    tokens[name] = Token.objects.create(user=user).key
print(json.dumps(tokens))
"""

ITEM_ROWS = """
import json, sys
from recognition.models import JobItem
rows = JobItem.objects.filter(job_id=int(sys.argv[1]))
print(json.dumps({
    row.position: [row.status, row.upload_id, row.finished_at and row.finished_at.isoformat()]
    for row in rows
}))
"""

HISTORY = """
import json, sys
from collections import Counter
from recognition.models import Classification, Upload
uploads = Counter(Upload.objects.filter(user__username=sys.argv[1]).values_list("stored_image__sha256", flat=True))
classifications = Counter(
    Classification.objects.filter(stored_image__sha256__in=list(uploads)).values_list("stored_image__sha256", flat=True)
)
print(json.dumps({"uploads": uploads, "classifications": classifications}))
"""


@dataclass
class Service:
    data: LiveData
    server: LiveServer
    tokens: dict[str, str]
    logs: Path
    worker_logs: list[Path]

    def start_worker(self) -> None:
        self.worker_logs.append(self.logs / f"worker-{len(self.worker_logs) + 1}.log")
        self.worker = start_worker(self.data, self.worker_logs[-1], **WORKER_ENV)

    def kill_worker(self) -> None:
        self.worker.kill()  # SIGKILL: no clean shutdown, no message handed back
        self.worker.wait(timeout=60)

    def stop_worker(self) -> None:
        self.worker.terminate()
        self.worker.wait(timeout=HANG)

    def get(self, user: str, path: str) -> dict:
        answer = fetch(self.server, "GET", path, headers={"Authorization": f"Token {self.tokens[user]}"})
        assert answer.status == 200, answer.body[:500]
        return json.loads(answer.body)

    def start(self, user: str, files: list[tuple[str, bytes]]) -> dict:
        status, body = start_import(self.server, self.tokens[user], files)
        assert status == 202, body
        assert (body["status"], body["total"], body["done"]) == ("queued", len(files), 0)
        return body

    def items(self, user: str, job_id: int) -> list[dict]:
        body = self.get(user, f"{IMPORTS_PATH}{job_id}/?page_size=500")
        assert body["items_next"] is None
        return body["items"]


@pytest.fixture(scope="module")
def service(tmp_path_factory, prepared_models_dir) -> Iterator[Service]:
    """One server and one worker for the whole file (each start costs seconds); each
    test imports as its own user, so no import waits behind another's."""
    scratch = tmp_path_factory.mktemp("import-live")
    with live_data(scratch, prepared_models_dir) as data:
        tokens = data.run_json(MAKE_USERS, PASSWORD, *USERS)
        with gunicorn(data, workers=1, threads=4) as server:
            live = Service(data, server, tokens, scratch, [])
            live.start_worker()
            try:
                yield live
            finally:
                live.stop_worker()


def test_progress_seen_by_a_second_client_advances_through_intermediate_counts_to_done(service):
    started = service.start("alice", photo_variants(PICTURES, seed=1))
    browser = Browser(service.server)  # the same user in a browser session, not the token
    browser.log_in(User("alice", PASSWORD, service.tokens["alice"]))

    def read():
        answer = browser.get(f"{IMPORTS_PATH}{started['id']}/?page_size=1")
        assert answer.status == 200, answer.body[:500]
        return json.loads(answer.body)

    seen = poll(read, lambda job: job["status"] in FINISHED, "the import finished", HANG)

    processed = [job["done"] + job["failed"] for job in seen]
    assert processed == sorted(processed), processed
    assert any(0 < count < PICTURES for count in processed), processed
    assert (seen[-1]["status"], seen[-1]["done"], seen[-1]["failed"]) == ("done", PICTURES, 0)
    statuses = [job["status"] for job in seen]
    assert statuses == sorted(statuses, key=["queued", "running", "done"].index), statuses


def test_a_cancel_stops_the_import_within_a_batch_and_the_rest_is_cancelled(service):
    started = service.start("bob", photo_variants(PICTURES, seed=2))
    job_path = f"{IMPORTS_PATH}{started['id']}/"
    poll(lambda: service.get("bob", f"{job_path}?page_size=1"), lambda job: job["done"] > 0,
         "the first pictures classified", HANG)

    answer = fetch(service.server, "POST", f"{job_path}cancel/",
                   headers={"Authorization": f"Token {service.tokens['bob']}"})
    assert answer.status == 200, answer.body[:500]
    done_at_cancel = json.loads(answer.body)["done"]
    [*_, job] = poll(lambda: service.get("bob", f"{job_path}?page_size=1"),
                     lambda job: job["status"] in FINISHED, "the import stopped", HANG)

    assert job["status"] == "cancelled"
    assert job["done"] + job["failed"] < PICTURES
    # Only the batch that was in the forward pass when the cancel came may still finish.
    assert done_at_cancel <= job["done"] <= done_at_cancel + BATCH
    statuses = [item["status"] for item in service.items("bob", started["id"])]
    assert statuses.count("done") == job["done"]
    assert statuses.count("cancelled") == PICTURES - job["done"] - job["failed"] > 0


def test_a_worker_killed_mid_import_and_restarted_finishes_every_picture_exactly_once(service):
    files = photo_variants(PICTURES, seed=3)
    started = service.start("carol", files)
    job_path = f"{IMPORTS_PATH}{started['id']}/?page_size=1"
    poll(lambda: service.get("carol", job_path), lambda job: job["done"] > 0,
         "the first pictures classified", HANG)
    service.kill_worker()
    killed = service.get("carol", job_path)
    assert killed["status"] == "running" and killed["done"] < PICTURES, killed
    before = service.data.run_json(ITEM_ROWS, str(started["id"]))
    finished_before = {position: row for position, row in before.items() if row[0] == "done"}
    assert finished_before

    service.start_worker()
    [*_, job] = poll(lambda: service.get("carol", job_path), lambda job: job["status"] in FINISHED,
                     "the restarted worker finished the import", HANG)

    assert (job["status"], job["done"], job["failed"]) == ("done", PICTURES, 0)
    items = service.items("carol", started["id"])
    assert [item["status"] for item in items] == ["done"] * PICTURES
    assert len({item["classification_id"] for item in items}) == PICTURES
    shas = [hashlib.sha256(data).hexdigest() for _, data in files]
    history = service.data.run_json(HISTORY, "carol")
    assert history == {"uploads": dict.fromkeys(shas, 1), "classifications": dict.fromkeys(shas, 1)}
    # What the killed worker finished, the restarted one left alone: same row, same time.
    after = service.data.run_json(ITEM_ROWS, str(started["id"]))
    assert {position: after[position] for position in finished_before} == finished_before
    restarted = service.worker_logs[-1].read_text()
    resumed = f"Job {started['id']} (import) running: {killed['done']} of {PICTURES} done"
    assert restarted.count(f"Job {started['id']} (import) running:") == 1, restarted[-3000:]
    assert resumed in restarted, restarted[-3000:]
