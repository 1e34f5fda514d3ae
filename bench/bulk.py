"""Bulk import throughput: distinct photos through POST /api/v1/imports/, against the
bare model's batch-8 throughput measured in the same run.

    .venv/bin/python -m bench.bulk [--pictures 200] [--profile-pictures 64]

Prepares a random-init ResNet-18 (speed does not depend on the weights' values; the real
ones cannot be downloaded here) and times its model.onnx in a plain ONNX Runtime session
on batches of 8: the ceiling. Then starts, on 127.0.0.1 only, the real service (gunicorn,
production settings, SQLite, local files) and one Celery worker as `make run` does, sends
`pictures` distinct photos of mixed sizes (bench/photos.py: augmented real photos and
synthetic pictures, shorter side 256 to 1200 px) as one import, and polls it, lightly,
until it is done: pictures per second from the 202 answer to `done`, held against
0.8 × the ceiling. The web server only answers the polls meanwhile.

Where the time goes: with the worker stopped, a second import of `profile-pictures`
other photos is run by the worker's own job function (jobs.run) in one process under
cProfile, and its time split into reading the staged file, decoding, preprocessing, the
forward pass, storing the image with its rows, and the item rows. The worker's thumbnails
(made by its other thread during the timed run) are not in that profile.

Prints a table and writes bench/results/bulk.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench.photos import varied_pictures
from bench.serving import create_tokens, prepare_random_model, running_service, server_env, stop
from bench.timing import alternating_latencies, raw_onnxruntime, speed

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "bulk.json"
PYTHON = sys.executable
TARGET = 0.8  # of the bare model's batch-8 throughput
POLL_SECONDS = 0.25
TIMEOUT = 1800
FINISHED = {"done", "failed", "cancelled"}

PART = "  of which "
# Stages of the profile: the worker's functions whose cumulative time makes each (the
# forward pass runs in the batching classifier's runner thread, which cProfile does not
# see: it is the classify call's time less the preprocessing done in the caller's).
STAGES = {
    "read staged file": ("recognition/imports.py", "_read_staged"),
    "decode": ("recognition/services.py", "_decode_upload"),
    "preprocess": ("recognition/engine/preprocess.py", "batch"),
    "forward pass": ("recognition/engine/", "classify"),
    "store image + rows": ("recognition/services.py", "_store_and_record"),
    # Part of the line above: the thumbnail's message is sent as the upload's row commits.
    PART + "thumbnail message": ("recognition/tasks.py", "queue_thumbnail"),
    "item rows": ("django/db/models/query.py", "bulk_update"),
    "job progress": ("recognition/jobs.py", "progress"),
}
PROFILE = """
import cProfile, json, pstats, sys, time
import django
django.setup()
from recognition import jobs
profile = cProfile.Profile()
started = time.perf_counter()
profile.enable()
status = jobs.run(int(sys.argv[1]))
profile.disable()
total = time.perf_counter() - started
stages = {}
for (path, _line, function), (_calls, _count, _own, cumulative, _callers) in pstats.Stats(profile).stats.items():
    for stage, (part, name) in json.loads(sys.argv[2]).items():
        if function == name and part in path:
            stages[stage] = stages.get(stage, 0.0) + cumulative
print(json.dumps({"status": status, "seconds": total, "stages": stages}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pictures", type=int, default=200)
    parser.add_argument("--profile-pictures", type=int, default=64)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-bulk-") as scratch:
        data_dir = Path(scratch) / "data"
        _, manifest = prepare_random_model(data_dir)
        ceiling = _raw_batch8(manifest.onnx_path)
        print(f"raw ONNX Runtime, batch 8: {ceiling:.1f} images/s")
        timed_pictures = _pictures(args.pictures, seed=5)
        profiled_pictures = _pictures(args.profile_pictures, seed=6)
        with running_service(data_dir) as (port, _server):
            [token] = create_tokens(data_dir, port, ["bench"])
            log = Path(scratch) / "worker.log"
            worker = _start_worker(data_dir, port, log)
            try:
                _wait_until_ready(worker, log)
                timed = _import(port, token, timed_pictures)
            finally:
                stop(worker)
            queued = _post_import(port, token, profiled_pictures)[1]["id"]
            profile = _profile(data_dir, port, queued)
        thumbnails = log.read_text(errors="replace").count("Thumbnail made for image")

    report = {
        "machine": {"cpu_count": os.cpu_count(), "torch": torch.__version__},
        "raw_onnxruntime_batch8_images_per_s": ceiling,
        "import": {**timed, "thumbnails_made_meanwhile": thumbnails},
        "ratio": timed["images_per_s"] / ceiling,
        "target_ratio": TARGET,
        "profile": profile,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    _print(report)
    print(f"\nWritten to {args.output}")


def _raw_batch8(path: Path) -> float:
    run = {"raw": raw_onnxruntime(path, os.cpu_count() or 1)}
    eight = alternating_latencies(run, torch.randn(8, 3, 224, 224), warmup=3, iterations=15)
    return speed(8, eight["raw"])["images_per_s"]


def _pictures(count: int, seed: int) -> list[tuple[str, bytes]]:
    pictures = varied_pictures(count, min_side=256, max_side=1200, seed=seed)
    return [(f"{seed}-{n}.jpg", picture.jpeg) for n, picture in enumerate(pictures)]


def _start_worker(data_dir: Path, port: int, log: Path) -> subprocess.Popen:
    """One worker as the Procfile starts it, on the service's data dir (and so its
    embedded broker)."""
    with log.open("wb") as log_file:
        return subprocess.Popen(
            [PYTHON, "-m", "celery", "-A", "classifier_site", "worker", "--loglevel=INFO"],
            cwd=REPO, env={**server_env(data_dir, port), "LOG_LEVEL": "INFO"},
            stdout=log_file, stderr=subprocess.STDOUT,
        )


def _wait_until_ready(worker: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + TIMEOUT
    while " ready." not in log.read_text(errors="replace"):
        if worker.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the worker did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)


def _request(port: int, method: str, path: str, headers: dict[str, str], body: bytes | None = None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        connection.request(method, path, body, headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def _post_import(port: int, token: str, pictures: list[tuple[str, bytes]]) -> tuple[float, dict]:
    """The import sent; when its 202 answer arrived (perf_counter) and the answer."""
    boundary = secrets.token_hex(16)
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
        f"Content-Type: image/jpeg\r\n\r\n".encode() + data + b"\r\n"
        for name, data in pictures
    ) + f"--{boundary}--\r\n".encode()
    headers = {"Authorization": f"Token {token}", "Content-Type": f"multipart/form-data; boundary={boundary}"}
    status, answer = _request(port, "POST", "/api/v1/imports/", headers, body)
    if status != 202:
        raise RuntimeError(f"the import was refused: {status} {answer}")
    return time.perf_counter(), answer


def _import(port: int, token: str, pictures: list[tuple[str, bytes]]) -> dict:
    accepted, job = _post_import(port, token, pictures)
    headers = {"Authorization": f"Token {token}"}
    polls = 0
    while job["status"] not in FINISHED:
        if time.perf_counter() - accepted > TIMEOUT:
            raise RuntimeError(f"the import did not finish in {TIMEOUT}s: {job}")
        time.sleep(POLL_SECONDS)
        _, job = _request(port, "GET", f"/api/v1/imports/{job['id']}/?page_size=1", headers)
        polls += 1
    seconds = time.perf_counter() - accepted
    if job["status"] != "done" or job["done"] != len(pictures):
        raise RuntimeError(f"the import did not classify every picture: {job}")
    return {
        "pictures": len(pictures),
        "megabytes": sum(len(data) for _, data in pictures) / 1e6,
        "seconds": seconds,
        "images_per_s": len(pictures) / seconds,
        "job_rate_images_per_s": job["rate"],  # from its start to its end, in the job's row
        "polls": polls,
    }


def _profile(data_dir: Path, port: int, job_id: int) -> dict:
    env = {**server_env(data_dir, port), "DJANGO_SETTINGS_MODULE": "classifier_site.settings"}
    done = subprocess.run(
        [PYTHON, "-c", PROFILE, str(job_id), json.dumps(STAGES)],
        cwd=REPO, env=env, capture_output=True, text=True, check=True, timeout=TIMEOUT,
    )
    profile = json.loads(done.stdout.strip().splitlines()[-1])
    stages = profile["stages"]
    stages["forward pass"] = stages.get("forward pass", 0.0) - stages.get("preprocess", 0.0)
    stages["other"] = profile["seconds"] - sum(
        seconds for stage, seconds in stages.items() if not stage.startswith(PART)
    )
    return profile


def _print(report: dict) -> None:
    timed = report["import"]
    print(f"\n{'pictures':>8} {'MB':>6} {'seconds':>8} {'img/s':>7} {'job img/s':>10} "
          f"{'raw b8 img/s':>13} {'ratio':>6} {'target':>7}")
    print(f"{timed['pictures']:>8} {timed['megabytes']:>6.1f} {timed['seconds']:>8.1f} "
          f"{timed['images_per_s']:>7.1f} {timed['job_rate_images_per_s']:>10.1f} "
          f"{report['raw_onnxruntime_batch8_images_per_s']:>13.1f} {report['ratio']:>5.2f}× "
          f"{report['target_ratio']:>6.2f}×  {'met' if report['ratio'] >= TARGET else 'short'}")
    profile = report["profile"]
    print(f"\nwhere the time goes (jobs.run under cProfile, {profile['seconds']:.1f} s):")
    for stage in [*STAGES, "other"]:
        seconds = profile["stages"].get(stage, 0.0)
        print(f"  {stage:<28} {seconds:>7.2f} s {100 * seconds / profile['seconds']:>5.1f} %")


if __name__ == "__main__":
    main()
