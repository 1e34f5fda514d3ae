"""A bulk import posted to one node is followed on the other, survives its worker being
SIGKILLed halfway, and lands in a history both nodes serve, each picture once."""

import hashlib
import json
import signal

from tests.cluster.live_cluster import fetch, poll
from tests.live_service import IMPORTS_PATH, photo_variants, start_import

PICTURES = 40  # five of the worker's batches of 8: time to be killed between two
FINISHED = {"done", "failed", "cancelled"}


def test_an_import_on_node_a_followed_on_node_b_survives_its_worker_killed_and_lands_once(cluster):
    erin = cluster.user("erin")
    token = {"Authorization": f"Token {erin.token}"}
    files = photo_variants(PICTURES, seed=31)
    shas = [hashlib.sha256(data).hexdigest() for _, data in files]
    status, started = start_import(cluster.a, erin.token, files)
    assert status == 202, started
    job_path = f"{IMPORTS_PATH}{started['id']}/"

    def get(node, path: str) -> dict:
        answer = fetch(node, "GET", path, headers=token)
        assert answer.status == 200, (node.name, answer.body[:500])
        return json.loads(answer.body)

    def on_b(path: str = f"{job_path}?page_size=1") -> dict:
        return get(cluster.b, path)

    def item_rows() -> dict:
        rows = cluster.sql(
            "SELECT position, status, upload_id, finished_at FROM recognition_jobitem"
            " WHERE job_id = %s", started["id"])
        return {position: rest for position, *rest in rows}

    seen = poll(on_b, lambda job: job["done"] > 0, "node B sees the first pictures classified")
    cluster.kill(cluster.worker, signal.SIGKILL)
    killed = on_b()
    assert killed["status"] == "running" and killed["done"] < PICTURES, killed
    finished_before = {position: row for position, row in item_rows().items() if row[0] == "done"}

    since = len(cluster.worker.log_text())
    cluster.start(cluster.worker)
    seen += poll(on_b, lambda job: job["status"] in FINISHED, "node B sees the import finished")

    processed = [job["done"] + job["failed"] for job in seen]
    assert processed == sorted(processed), processed
    assert (seen[-1]["status"], seen[-1]["done"], seen[-1]["failed"]) == ("done", PICTURES, 0)
    items = on_b(f"{job_path}?page_size=500")["items"]
    assert [item["status"] for item in items] == ["done"] * PICTURES
    imported = {item["classification_id"] for item in items}
    for node in (cluster.a, cluster.b):
        history = get(node, "/api/v1/classifications/?page_size=100")["results"]
        assert {entry["id"] for entry in history} == imported, node.name
    uploads = dict(cluster.sql(
        "SELECT s.sha256, count(*) FROM recognition_upload u"
        " JOIN recognition_storedimage s ON s.id = u.stored_image_id"
        " JOIN auth_user a ON a.id = u.user_id WHERE a.username = %s GROUP BY s.sha256", erin.name))
    classifications = dict(cluster.sql(
        "SELECT s.sha256, count(*) FROM recognition_classification c"
        " JOIN recognition_storedimage s ON s.id = c.stored_image_id"
        " WHERE s.sha256 = ANY(%s) GROUP BY s.sha256", shas))
    assert uploads == classifications == dict.fromkeys(shas, 1)
    # The restarted worker resumed after what the killed one had finished, and left it be.
    assert {position: item_rows()[position] for position in finished_before} == finished_before
    restarted = cluster.worker.log_text()[since:]
    assert restarted.count(f"Job {started['id']} (import) running:") == 1, restarted[-3000:]
    assert f"Job {started['id']} (import) running: {killed['done']} of {PICTURES} done" in restarted
