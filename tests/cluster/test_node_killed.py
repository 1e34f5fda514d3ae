"""A web node SIGKILLed in the middle of traffic: the other answers on as if nothing
happened, and the shared state is left whole."""

import re
import signal
import threading

from tests.cluster.live_cluster import upload, wait_for
from tests.cluster.test_uploads_across_nodes import jpeg

CLIENTS = 2  # per node, each its own user, each below the cluster's upload burst
UPLOADS = 8  # per client


def test_node_b_keeps_answering_when_node_a_is_killed_mid_traffic_and_nothing_is_left_half_done(cluster):
    made = iter(cluster.users("traffic", 2 * CLIENTS))
    users = {(node.name, c): next(made) for node in (cluster.a, cluster.b) for c in range(CLIENTS)}
    results: dict[str, list] = {"node-a": [], "node-b": []}
    lock = threading.Lock()
    a_answered = threading.Semaphore(0)

    def client(node, c):
        for i in range(UPLOADS):
            seed = 5000 + 100 * c + i + (0 if node is cluster.a else 50)
            try:
                status, _ = upload(node, users[(node.name, c)].token, jpeg(seed), "t.jpg", timeout=60)
            except OSError as exc:  # node A's connection dropped or refused: expected
                status = type(exc).__name__
            with lock:
                results[node.name].append(status)
            if node is cluster.a:
                a_answered.release()

    threads = [threading.Thread(target=client, args=(node, c)) for node in (cluster.a, cluster.b)
               for c in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for _ in range(CLIENTS):  # node A is busy answering when it dies
        assert a_answered.acquire(timeout=120)
    cluster.kill(cluster.a, signal.SIGKILL)
    for thread in threads:
        thread.join()

    assert len(results["node-b"]) == CLIENTS * UPLOADS
    assert set(results["node-b"]) == {201}, results["node-b"]
    assert any(not isinstance(s, int) for s in results["node-a"]), results["node-a"]  # it did die

    assert cluster.sql(
        "SELECT count(*) FROM recognition_storedimage s WHERE NOT EXISTS"
        " (SELECT 1 FROM recognition_classification c WHERE c.stored_image_id = s.id)"
    ) == [(0,)]
    assert cluster.sql(
        "SELECT count(*) FROM recognition_classification c WHERE NOT EXISTS"
        " (SELECT 1 FROM recognition_prediction p WHERE p.classification_id = c.id)"
    ) == [(0,)]
    objects = set(cluster.object_names("images/"))
    paths = {path for (path,) in cluster.sql("SELECT path FROM recognition_storedimage")}
    assert not {p for p in paths if not any(name.endswith(p.rsplit("/", 1)[-1]) for name in objects)}

    report = cluster.manage("cleanup_orphans", "--dry-run")
    summary = report.stdout.strip().splitlines()[-1]
    assert "missing file" not in report.stderr, report.stderr
    counts = [int(n) for n in re.findall(r"(\d+) (?:orphan files|recent unreferenced|stored images)", summary)]
    orphans, recent, missing = counts
    assert (orphans, missing) == (0, 0), summary
    assert recent <= CLIENTS, summary  # at most what A was writing when it died

    cluster.start(cluster.a)
    wait_for(lambda: upload(cluster.a, users[("node-a", 0)].token, jpeg(5999), "back.jpg")[0] == 201,
             "node A answering again")
