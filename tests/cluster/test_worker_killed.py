"""The worker SIGKILLed in the middle of a thumbnail, then started again: the work is
done, and done once."""

import hashlib
import io
import signal

import numpy as np
from PIL import Image

from tests.cluster.live_cluster import upload, wait_for

PICTURES = 3


def large_png(seed: int) -> bytes:
    """38 megapixels (just under the pixel limit) in about 1.5 MB: a thumbnail of it
    takes the worker most of a second, long enough to be killed in the middle."""
    side = 6200
    ramp = np.linspace(0, 255, side, dtype=np.float32)
    pixels = np.empty((side, side, 3), np.uint8)
    pixels[..., 0] = ramp[None, :]
    pixels[..., 1] = ramp[:, None]
    pixels[..., 2] = seed % 256
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def test_a_thumbnail_whose_worker_was_killed_mid_task_is_made_exactly_once_after_a_restart(cluster):
    frank = cluster.user("frank")
    worker = cluster.worker
    pictures = [large_png(60 + i) for i in range(PICTURES)]
    shas = [hashlib.sha256(data).hexdigest() for data in pictures]
    for i, data in enumerate(pictures):
        status, body = upload(cluster.a, frank.token, data, f"big{i}.png")
        assert status == 201, body

    def claimed_unfinished():
        return [sha for sha, claimed, state in cluster.sql(
            "SELECT sha256, thumbnail_claimed_at, thumbnail_state FROM recognition_storedimage"
            " WHERE sha256 = ANY(%s)", shas) if claimed is not None and state == "pending"]

    mid_task = wait_for(claimed_unfinished, "the worker working on a thumbnail")
    cluster.kill(worker, signal.SIGKILL)
    interrupted = [sha for sha in mid_task if sha in claimed_unfinished()]
    assert interrupted, "the thumbnail finished before the worker was killed"

    cluster.start(worker)

    def states():
        return dict(cluster.sql(
            "SELECT sha256, thumbnail_state FROM recognition_storedimage WHERE sha256 = ANY(%s)", shas))

    wait_for(lambda: set(states().values()) == {"ready"}, f"every thumbnail made: {states()}")
    log = worker.log_text()
    assert {sha: log.count(f"Thumbnail made for image {sha}") for sha in shas} == {sha: 1 for sha in shas}
    attempts = dict(cluster.sql(
        "SELECT sha256, thumbnail_attempts FROM recognition_storedimage WHERE sha256 = ANY(%s)", shas))
    assert all(attempts[sha] == 2 for sha in interrupted), attempts
    thumbnails = cluster.object_names("thumbnails/")
    assert all(len([name for name in thumbnails if sha in name]) == 1 for sha in shas)
