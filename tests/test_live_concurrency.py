"""The real service under gunicorn (2 workers x 4 threads), hit by 40 clients at once:
20 send the same new photo, 20 send photos of their own. Nobody gets a server error,
the shared photo is stored once, and the disk and the database agree exactly."""

from __future__ import annotations

import hashlib
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.live_service import gunicorn, live_data, upload
from tests.web_fixtures import image_bytes

pytestmark = pytest.mark.slow

CLIENTS = 20
# The test asserts that every upload succeeds, never how fast: these only turn a hung
# server into a failure. The 40 uploads need 21 classifications at one core per worker,
# a few seconds on a quiet machine and well under a minute with every core busy, and the
# last response waits for all of them; a socket that hears nothing for five minutes (or
# a client that never reaches the start line) means something is stuck.
START_TIMEOUT = 300
RESPONSE_TIMEOUT = 300

CREATE_USERS = """
import json, sys
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
users = [get_user_model().objects.create_user(f"user{i}") for i in range(int(sys.argv[1]))]
print(json.dumps([Token.objects.create(user=user).key for user in users]))
"""

DATABASE_STATE = """
import json
from recognition.models import Classification, StoredImage, Upload
print(json.dumps({
    "stored_images": StoredImage.objects.count(),
    "classifications": Classification.objects.count(),
    "uploads": Upload.objects.count(),
    "uploads_of_shared": Upload.objects.filter(stored_image__sha256=__import__("sys").argv[1]).count(),
    "paths": sorted(StoredImage.objects.values_list("path", flat=True)),
}))
"""

def test_forty_simultaneous_uploads_succeed_and_leave_the_disk_and_database_in_agreement(
    tmp_path, prepared_models_dir
):
    shared = image_bytes(seed=9000)
    own = [image_bytes(seed=9001 + i) for i in range(CLIENTS)]
    with live_data(tmp_path, prepared_models_dir) as data:
        tokens = data.run_json(CREATE_USERS, str(CLIENTS))
        with gunicorn(data, workers=2, threads=4) as server:
            jobs = [(token, shared, "shared.jpg") for token in tokens] + [
                (token, image, f"own-{i}.jpg") for i, (token, image) in enumerate(zip(tokens, own))
            ]
            start = threading.Barrier(len(jobs), timeout=START_TIMEOUT)

            def send(job):
                token, image, name = job
                start.wait()
                return upload(server, token, image, name, timeout=RESPONSE_TIMEOUT)

            with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
                answers = list(pool.map(send, jobs))
            log = server.log.read_text()

        state = data.run_json(DATABASE_STATE, hashlib.sha256(shared).hexdigest())

    statuses = [status for status, _ in answers]
    assert statuses == [201] * len(jobs), (statuses, [b for s, b in answers if s != 201][:3], log[-2000:])
    assert {body["image"]["sha256"] for _, body in answers[:CLIENTS]} == {hashlib.sha256(shared).hexdigest()}
    assert state["stored_images"] == CLIENTS + 1  # the shared photo once, and each own one
    assert state["classifications"] == CLIENTS + 1
    assert state["uploads"] == CLIENTS * 2  # every user has both of theirs
    assert state["uploads_of_shared"] == CLIENTS
    on_disk = sorted(
        str(path.relative_to(data.media_root))
        for path in (data.media_root / "images").rglob("*")
        if path.is_file()
    )
    assert on_disk == state["paths"]  # no orphan, no temporary file, no row without its file
