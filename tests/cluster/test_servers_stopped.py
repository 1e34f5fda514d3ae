"""Redis or the object store stopped under a running cluster: uploads behave as
SECURITY.md says, nothing half-written is left, and everything recovers when the server
is back, without restarting a node."""

import hashlib
import os

from tests.cluster.live_cluster import Browser, upload, wait_for
from tests.cluster.test_uploads_across_nodes import jpeg


def test_with_the_object_store_stopped_uploads_get_503_nothing_is_written_and_both_recover(cluster):
    grace = cluster.user("grace")
    data = {node.name: jpeg(7000 + i) for i, node in enumerate((cluster.a, cluster.b))}
    shas = [hashlib.sha256(d).hexdigest() for d in data.values()]

    with cluster.server_stopped(os.environ["AWS_S3_ENDPOINT_URL"]):
        for node in (cluster.a, cluster.b):
            status, body = upload(node, grace.token, data[node.name], "down.jpg")
            assert status == 503, body
            assert body["error"]["code"] == "storage_unavailable"
        assert cluster.sql("SELECT count(*) FROM recognition_storedimage WHERE sha256 = ANY(%s)", shas) == [(0,)]
        assert cluster.sql(
            "SELECT count(*) FROM recognition_upload u JOIN auth_user a ON u.user_id = a.id"
            " WHERE a.username = %s", grace.name) == [(0,)]

    for node in (cluster.a, cluster.b):
        wait_for(lambda: upload(node, grace.token, data[node.name], "back.jpg")[0] == 201,
                 f"{node.name} storing uploads again")
    assert cluster.sql("SELECT count(*) FROM recognition_storedimage WHERE sha256 = ANY(%s)", shas) == [(2,)]
    objects = cluster.object_names("images/")
    assert all(any(sha in name for name in objects) for sha in shas)


def test_with_redis_stopped_uploads_work_logins_get_503_and_thumbnails_follow_once_it_is_back(cluster):
    heidi = cluster.user("heidi")
    data = jpeg(7100)
    sha256 = hashlib.sha256(data).hexdigest()
    login_form = Browser(cluster.b)
    login_form.get("/accounts/login/")  # the form and its CSRF cookie, while Redis is up

    with cluster.server_stopped(os.environ["REDIS_URL"]):
        # SECURITY.md: the upload limits fail open while their counters are unreachable,
        # logins fail closed (unlimited password guessing is what their limit stops).
        for i, node in enumerate((cluster.a, cluster.b)):
            status, body = upload(node, heidi.token, jpeg(7100 + i), "no-redis.jpg")
            assert status == 201, body
        assert login_form.submit_login(heidi) == 503
        # The thumbnail's job could not be queued: its row waits, pending.
        assert cluster.sql(
            "SELECT thumbnail_state FROM recognition_storedimage WHERE sha256 = %s", sha256) == [("pending",)]

    wait_for(lambda: cluster.sql(
        "SELECT thumbnail_state FROM recognition_storedimage WHERE sha256 = %s", sha256) == [("ready",)],
        "the sweep queuing the thumbnail once Redis is back")
    status, body = upload(cluster.b, heidi.token, jpeg(7102), "redis-back.jpg")
    assert status == 201, body
