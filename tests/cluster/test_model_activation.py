"""A model activated on one machine is served by every node and the worker without a
restart; a build whose artifact in the store was damaged is refused by its checksum,
loudly, and the nodes keep serving the model they have."""

import json
import re

from tests.cluster.live_cluster import fetch, upload, wait_for
from tests.cluster.test_uploads_across_nodes import jpeg


def serving(node, user) -> str:
    answer = fetch(node, "GET", "/api/v1/models/active/", headers={"Authorization": f"Token {user.token}"})
    assert answer.status == 200, answer.body
    body = json.loads(answer.body)
    return f"{body['name']}-{body['version']}"


def last_served(node) -> str | None:
    """The model a process last said it serves ("Serving model KEY" in its log)."""
    said = re.findall(r"Serving model (\S+)", node.log_text())
    return said[-1] if said else None


def activate_and_wait(cluster, user, key: str) -> None:
    cluster.manage("activate_model", key)
    for node in (cluster.a, cluster.b):
        wait_for(lambda: serving(node, user) == key, f"{node.name} serving {key}")
    # The worker holds no HTTP port: its log says when it switched.
    wait_for(lambda: last_served(cluster.worker) == key, f"the worker serving {key}")


def test_an_activated_model_is_served_by_both_nodes_and_the_worker_without_restarts(cluster):
    dave = cluster.user("dave")
    pids = {node.name: node.pid for node in cluster.nodes.values()}
    spare, first = cluster.models["spare"], cluster.models["serving"]
    assert serving(cluster.a, dave) == serving(cluster.b, dave) == last_served(cluster.worker) == first

    activate_and_wait(cluster, dave, spare)
    try:
        for i, node in enumerate((cluster.a, cluster.b)):
            status, body = upload(node, dave.token, jpeg(4400 + i), "after.jpg")
            assert status == 201, body
            assert f"{body['model']['name']}-{body['model']['version']}" == spare
        assert cluster.sql("SELECT previous_key FROM recognition_activemodel ORDER BY activated_at DESC, id DESC LIMIT 1") == [(first,)]
        assert {node.name: node.pid for node in cluster.nodes.values()} == pids  # no restarts
        assert all(node.alive() for node in cluster.nodes.values())
    finally:
        activate_and_wait(cluster, dave, first)  # the rollback, and the next tests' model


def test_a_build_with_a_damaged_artifact_is_refused_loudly_and_the_old_model_kept(cluster):
    erin = cluster.user("erin")
    first, corrupt = cluster.models["serving"], cluster.models["corrupt"]
    marks = {node.name: len(node.log_text()) for node in (cluster.a, cluster.b)}
    # As if it had been activated before its object was damaged: straight into the table,
    # since activate_model itself may check the artifact first.
    cluster.sql(
        "INSERT INTO recognition_activemodel (key, previous_key, activated_at)"
        " VALUES (%s, %s, now())", corrupt, first,
    )
    try:
        for i, node in enumerate((cluster.a, cluster.b)):
            def refused():
                assert serving(node, erin) == first  # a request: it checks the active row
                return next((text for text in node.log_text()[marks[node.name]:].splitlines()
                             if f"Refused to switch to the active model {corrupt}" in text), None)

            line = wait_for(refused, f"{node.name} refusing {corrupt} in its log")
            assert line.startswith("ERROR") and "SHA-256" in line and f"Still serving {first}" in line, line
            assert serving(node, erin) == first
            status, body = upload(node, erin.token, jpeg(4500 + i), "kept.jpg")
            assert status == 201, body
            assert f"{body['model']['name']}-{body['model']['version']}" == first
    finally:
        activate_and_wait(cluster, erin, first)
