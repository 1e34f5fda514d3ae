"""The same new image sent to both nodes at once is stored and classified once."""

import hashlib
import threading

from tests.cluster.live_cluster import upload
from tests.cluster.test_uploads_across_nodes import jpeg

PER_NODE = 10


def test_the_same_new_image_sent_to_both_nodes_at_once_is_stored_and_classified_once(cluster):
    # Several users, so the per-user upload limit the cluster runs with stays out of it.
    users = cluster.users("dup", 4)
    data = jpeg(2202)
    sha256 = hashlib.sha256(data).hexdigest()
    start = threading.Barrier(2 * PER_NODE)
    statuses: list[int] = []
    lock = threading.Lock()

    def send(node, user):
        start.wait()
        status, _ = upload(node, user.token, data, "same.jpg")
        with lock:
            statuses.append(status)

    threads = [
        threading.Thread(target=send, args=(node, users[(2 * i + j) % len(users)]))
        for i in range(PER_NODE) for j, node in enumerate((cluster.a, cluster.b))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(statuses) == 2 * PER_NODE
    assert [s for s in statuses if s >= 500] == []
    assert set(statuses) <= {200, 201}, statuses
    assert statuses.count(201) == len(users)  # each user's first upload; repeats are 200
    assert cluster.sql("SELECT count(*) FROM recognition_storedimage WHERE sha256 = %s", sha256) == [(1,)]
    assert cluster.sql(
        "SELECT count(*) FROM recognition_classification c JOIN recognition_storedimage s"
        " ON c.stored_image_id = s.id WHERE s.sha256 = %s", sha256,
    ) == [(1,)]
    assert [name for name in cluster.object_names("images/") if sha256 in name] != []
    assert len([name for name in cluster.object_names("images/") if sha256 in name]) == 1
