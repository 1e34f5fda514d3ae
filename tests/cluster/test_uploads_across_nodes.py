"""An upload on one node is everybody's: listed, shown, thumbnailed and downloadable on
the other, its bytes in the object store and on neither node's disk."""

import hashlib
import io
import json

from tests.cluster.live_cluster import Browser, fetch, upload, wait_for
from tests.helpers import noise_picture


def jpeg(seed: int) -> bytes:
    buffer = io.BytesIO()
    noise_picture(seed, (320, 240)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def test_an_upload_on_node_a_is_listed_shown_thumbnailed_and_downloadable_on_node_b(cluster):
    alice = cluster.user("alice")
    data = jpeg(1101)
    sha256 = hashlib.sha256(data).hexdigest()

    status, created = upload(cluster.a, alice.token, data, "cat.jpg")
    assert status == 201, created

    token = {"Authorization": f"Token {alice.token}"}
    listed = fetch(cluster.b, "GET", "/api/v1/classifications/", headers=token)
    assert listed.status == 200
    assert created["id"] in [item["id"] for item in json.loads(listed.body)["results"]]
    browser = Browser(cluster.b)
    browser.log_in(alice)
    page = browser.get(f"/uploads/{created['id']}/")
    assert page.status == 200 and b"cat.jpg" in page.body
    image = browser.get(f"/uploads/{created['id']}/image")
    assert image.status == 200 and image.body == data
    thumbnail = wait_for(
        lambda: (answer := browser.get(f"/uploads/{created['id']}/thumbnail")).status == 200
        and answer.headers["Content-Type"] == "image/jpeg" and answer,
        "the worker's thumbnail served by node B",
    )
    assert thumbnail.body[:3] == b"\xff\xd8\xff"

    objects = cluster.object_names()
    assert any(sha256 in name and name.startswith("images/") for name in objects), objects
    assert any(sha256 in name and name.startswith("thumbnails/") for name in objects), objects
    on_disk = [path for folder in cluster.data_dirs() for path in folder.rglob(f"*{sha256}*")]
    assert on_disk == []
