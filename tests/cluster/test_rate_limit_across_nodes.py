"""The upload limit is one count for the whole cluster (Redis), not one per node."""

from tests.cluster.live_cluster import upload
from tests.cluster.test_uploads_across_nodes import jpeg


def test_the_upload_limit_is_reached_by_alternating_nodes_at_the_cluster_wide_count(cluster):
    burst = int(cluster.a.env["RECOGNITION_UPLOAD_RATE_BURST"].split("/")[0])
    carol = cluster.user("carol")
    nodes = [cluster.a, cluster.b]

    statuses = []
    for i in range(burst + 2):
        status, body = upload(nodes[i % 2], carol.token, jpeg(3300 + i), f"p{i}.jpg")
        statuses.append((nodes[i % 2].name, status, body.get("error", {}).get("code")))

    accepted = [s for s in statuses if s[1] == 201]
    assert len(accepted) == burst, statuses
    assert {name for name, _, _ in accepted} == {"node-a", "node-b"}
    assert [s[1] for s in statuses[burst:]] == [429, 429], statuses  # on both nodes
    assert {name for name, _, _ in statuses[burst:]} == {"node-a", "node-b"}
