"""Where the time of one upload goes: the same request measured layer by layer, from the
bare forward pass out to HTTP, one request at a time.

    .venv/bin/python -m bench.overhead [--requests 40]

Layers, each timed on its own distinct 640 × 480 JPEGs (random-init ResNet-18 on the
served backend, production settings, SQLite, in a scratch data directory):
1. forward pass: the served runner on a preprocessed batch of 1;
2. classify: preprocessing + the micro-batching classifier + forward pass;
3. decode + classify: the same from JPEG bytes;
4. upload service: recognition.services.upload_classify (hash, decode, classify, write
   the file with fsync, the database rows);
5. API in process: POST /api/v1/classifications/ through Django's test client
   (middleware, token auth, throttling, multipart parsing, serializer, JSON);
6. API over HTTP: the same POST to the real service under gunicorn on 127.0.0.1, from a
   client on the same machine (a fresh connection per request).
Layers 1-5 run in this process, taking turns; layer 6 runs first, against its own
server. Prints a table and writes bench/results/overhead.json.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench.serving import (
    create_tokens,
    distinct_jpeg,
    multipart,
    prepare_random_model,
    running_service,
    send_uploads,
    server_env,
)

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "overhead.json"
API = "/api/v1/classifications/"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=40, help="timed requests per layer")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as scratch:
        data_dir = Path(scratch) / "data"
        _, manifest = prepare_random_model(data_dir)
        # Over HTTP first: the in-process layers set this process's environment.
        over_http = _over_http(Path(scratch) / "http", args.requests)
        layers = _in_process(data_dir, manifest, args.requests)
    layers.append(("+ gunicorn, loopback HTTP", over_http))

    rows = [
        {"layer": name, "p50_ms": p50, "added_ms": p50 - layers[n - 1][1] if n else None}
        for n, (name, p50) in enumerate(layers)
    ]
    report = {
        "measures": "p50 latency of one request at a time, each layer including the ones above",
        "cpu_count": os.cpu_count(),
        "requests_per_layer": args.requests,
        "layers": rows,
        "http_over_forward_pass": layers[-1][1] / layers[0][1],
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'layer':<34} {'p50 ms':>8} {'added ms':>9}")
    for row in rows:
        added = "" if row["added_ms"] is None else f"{row['added_ms']:+.1f}"
        print(f"{row['layer']:<34} {row['p50_ms']:>8.1f} {added:>9}")
    print(f"API over HTTP / forward pass: {report['http_over_forward_pass']:.2f}×")
    print(f"\nWritten to {args.output}")


def _in_process(data_dir: Path, manifest, requests: int) -> list[tuple[str, float]]:
    os.environ.update(server_env(data_dir, port=0), ALLOWED_HOSTS="testserver")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "classifier_site.settings")
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.core.management import call_command
    from django.test import Client
    from rest_framework.authtoken.models import Token

    from recognition import services
    from recognition.configured_classifier import get_classifier
    from recognition.engine.backends import ONNXRUNTIME, load_runner
    from recognition.engine.images import decode_image
    from recognition.engine.preprocess import Preprocessor

    call_command("migrate", verbosity=0)
    user = get_user_model().objects.create_user("bench")
    token = Token.objects.create(user=user).key
    client = Client()
    classifier = get_classifier()
    runner = load_runner(manifest, ONNXRUNTIME, None)
    preprocessor = Preprocessor(manifest.preprocessing)
    numbers = iter(range(10**6))

    def fresh() -> bytes:
        return distinct_jpeg(next(numbers))

    def upload_service(data: bytes) -> None:
        services.upload_classify(user=user, file=SimpleUploadedFile("photo.jpg", data))

    def api_in_process(data: bytes) -> None:
        image = SimpleUploadedFile("photo.jpg", data, "image/jpeg")
        response = client.post(API, {"image": image}, HTTP_AUTHORIZATION=f"Token {token}")
        if response.status_code != 201:
            raise RuntimeError(f"upload failed: {response.status_code} {response.content!r}")

    layers: dict[str, tuple[Callable[[bytes], object], Callable[[bytes], object]]] = {
        # name: (what is prepared untimed from the JPEG bytes, what is timed on it)
        "forward pass (served backend)": (
            lambda data: preprocessor.batch([decode_image(data).image]),
            runner,
        ),
        "+ preprocess, micro-batching": (
            lambda data: decode_image(data).image,
            lambda image: classifier.classify([image]),
        ),
        "+ decode": (
            lambda data: data,
            lambda data: classifier.classify([decode_image(data).image]),
        ),
        "+ hash, store file, database": (lambda data: data, upload_service),
        "+ Django, DRF (no socket)": (lambda data: data, api_in_process),
    }
    seconds: dict[str, list[float]] = {name: [] for name in layers}
    for round_ in range(requests + 3):  # 3 untimed rounds warm everything up
        for name, (prepare, timed) in layers.items():
            argument = prepare(fresh())
            started = time.perf_counter()
            timed(argument)
            if round_ >= 3:
                seconds[name].append(time.perf_counter() - started)
    return [(name, float(np.median(s)) * 1000) for name, s in seconds.items()]


def _over_http(data_dir: Path, requests: int) -> float:
    prepare_random_model(data_dir)
    bodies = [multipart(f"photo-{i}.jpg", distinct_jpeg(10**6 + i)) for i in range(requests + 3)]
    with running_service(data_dir) as (port, server):
        [token] = create_tokens(data_dir, port, ["bench"])
        headers = {"Authorization": f"Token {token}"}
        send_uploads("warm-up", port, API, headers, bodies[:3], 1, server)
        run = send_uploads("over HTTP", port, API, headers, bodies[3:], 1, server)
    if run.errors:
        raise RuntimeError(f"{run.errors} uploads over HTTP failed")
    return run.p50_ms


if __name__ == "__main__":
    main()
