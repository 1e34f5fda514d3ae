"""Fixtures for the web layer: named users, their clients, and images made in memory.

Alice and Bob are ordinary users who must never see each other's uploads; `reviewer`
(Rita) judges corrections in the review queue; `superuser` reviews everything in the admin.
"""

from __future__ import annotations

import io
import itertools
import struct
import zlib
from collections.abc import Callable, Iterator

import pytest
from django.conf import settings
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from recognition import storage
from recognition.engine.batching import BatchingClassifier
from recognition.engine.classifier import Classifier
from recognition.models import Classification, Prediction, StoredImage, Upload
from tests.helpers import noise_picture

PASSWORD = "correct horse battery staple"

ImageFactory = Callable[..., bytes]


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix: None, tmp_path_factory) -> None:
    """A file-backed SQLite test database, so threads in the concurrency tests get real,
    separate connections (the default in-memory one shares a cache and locks tables)."""
    database = settings.DATABASES["default"]
    if database["ENGINE"] == "django.db.backends.sqlite3":
        database.setdefault("TEST", {})["NAME"] = str(tmp_path_factory.mktemp("db") / "test.sqlite3")


@pytest.fixture(autouse=True)
def fresh_cache(settings):
    """A private in-memory cache per test: rate-limit counters never leak between tests
    or into the data dir's shared cache."""
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "tests",
        }
    }
    cache.clear()
    yield
    cache.clear()


@pytest.fixture(scope="session", autouse=True)
def celery_broker_in_tmp(tmp_path_factory) -> None:
    """Tasks queued by the tests (an upload that commits) go to a broker of this session,
    not to the data dir's: the embedded broker's folders move to a temporary one. With
    REDIS_URL (scripts/with-redis) they go to that throwaway server, as in production."""
    from classifier_site.celery import app, make_broker_folders

    if app.conf.broker_url.startswith("filesystem"):
        folder = tmp_path_factory.mktemp("broker")
        app.conf.broker_transport_options = {
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "control_folder": str(folder / "control"),
        }
        make_broker_folders(app)


def make_pending_thumbnails() -> int:
    """Make every pending thumbnail now, in this process, with the worker's own task
    (not a stand-in): for tests that look at thumbnails without running a worker.
    Returns how many were made."""
    from recognition.models import ThumbnailState
    from recognition.tasks import make_thumbnail

    pending = StoredImage.objects.filter(thumbnail_state=ThumbnailState.PENDING)
    return sum(make_thumbnail(pk) == "made" for pk in pending.values_list("pk", flat=True))


@pytest.fixture
def fast_password_hashing(settings):
    """For tests that make many users or log in often: PBKDF2's deliberate slowness
    would dominate them. Opt in with pytest.mark.usefixtures("fast_password_hashing")."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


# --- Users and clients ------------------------------------------------------------


@pytest.fixture
def alice(django_user_model, db):
    return django_user_model.objects.create_user(username="alice", password=PASSWORD)


@pytest.fixture
def bob(django_user_model, db):
    return django_user_model.objects.create_user(username="bob", password=PASSWORD)


@pytest.fixture
def reviewer(django_user_model, db):
    """Rita is in the Reviewers group (made after every migrate and flush): she reviews everyone's corrections."""
    from django.contrib.auth.models import Group

    user = django_user_model.objects.create_user(username="rita", password=PASSWORD)
    user.groups.add(Group.objects.get(name="Reviewers"))
    return user


@pytest.fixture
def superuser(django_user_model, db):
    return django_user_model.objects.create_superuser(
        username="root", email="root@example.com", password=PASSWORD
    )


def _logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def alice_client(alice) -> Client:
    return _logged_in(alice)


@pytest.fixture
def bob_client(bob) -> Client:
    return _logged_in(bob)


@pytest.fixture
def reviewer_client(reviewer) -> Client:
    return _logged_in(reviewer)


@pytest.fixture
def superuser_client(superuser) -> Client:
    return _logged_in(superuser)


def _token_client(user) -> APIClient:
    client = APIClient()
    token = Token.objects.create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture
def alice_api(alice) -> APIClient:
    return _token_client(alice)


@pytest.fixture
def bob_api(bob) -> APIClient:
    return _token_client(bob)


# --- Images -----------------------------------------------------------------------

_seeds = itertools.count(1)


def image_bytes(image_format: str = "JPEG", size: tuple[int, int] = (64, 48), seed: int = 0) -> bytes:
    """Random-noise pixels: each seed gives different bytes, and noise keeps JPEGs big
    enough that cutting one in half damages its pixel data, not just its end."""
    buffer = io.BytesIO()
    noise_picture(seed, size).save(buffer, format=image_format)
    return buffer.getvalue()


@pytest.fixture
def make_image() -> ImageFactory:
    """Different bytes on every call, unless a seed is given."""

    def make(image_format: str = "JPEG", size: tuple[int, int] = (64, 48), seed: int | None = None) -> bytes:
        return image_bytes(image_format, size, next(_seeds) if seed is None else seed)

    return make


def png_claiming_size(width: int, height: int) -> bytes:
    """A tiny valid PNG whose header claims another size (a decompression bomb's shape)."""
    data = bytearray(image_bytes("PNG", (1, 1)))
    ihdr = data.index(b"IHDR")
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr : ihdr + 17])) & 0xFFFFFFFF
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", crc)
    return bytes(data)


def as_upload(data: bytes, name: str = "photo.jpg", content_type: str = "image/jpeg") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type=content_type)


# --- What was written -------------------------------------------------------------


def media_files(kind: str = "images") -> list[str]:
    """Names of the stored files under <kind>/ (local disk or this test's prefix in the
    bucket, through the storage API), leftover temporary files included."""
    return sorted(file.name for file in storage.list_files(kind))


def stored_bytes(name: str) -> bytes:
    """A stored file's content, read through the storage API."""
    with storage.open_file(name) as handle:
        return handle.read()


def s3_client():
    """A plain boto3 client of the suite's S3 server, beside the service's own backend."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=settings.AWS_S3_ENDPOINT_URL or None,
        region_name=settings.AWS_S3_REGION_NAME or None,
    )


def bucket_keys() -> list[str]:
    """This test's objects, named relative to its key prefix, as the S3 server itself
    lists them (not through the storage API)."""
    options = settings.STORAGES["default"]["OPTIONS"]
    prefix = options["location"] + "/"
    pages = s3_client().get_paginator("list_objects_v2").paginate(
        Bucket=options["bucket_name"], Prefix=prefix
    )
    return sorted(entry["Key"][len(prefix) :] for page in pages for entry in page.get("Contents", ()))


needs_object_store = pytest.mark.skipif(
    not settings.RECOGNITION_S3_BUCKET,
    reason="needs the S3 server of scripts/with-s3 (make test-postgres runs these)",
)


# For tests of a fault only a local disk has (full, read-only, not permitted); each such
# fault has its object-store counterpart tested against the real S3 server.
local_disk_only = pytest.mark.skipif(
    bool(settings.RECOGNITION_S3_BUCKET),
    reason="a local-disk fault; its object-store counterpart is tested against the S3 server",
)


def assert_nothing_written() -> None:
    """After a refused upload: no row of any kind, and no file in the storage's images/."""
    assert not StoredImage.objects.exists()
    assert not Classification.objects.exists()
    assert not Prediction.objects.exists()
    assert not Upload.objects.exists()
    assert not media_files()


def set_prediction_label(upload: Upload, rank: int, label: str) -> None:
    """Give an upload's prediction at `rank` a known label (its top_label too at rank 1),
    so filters and searches have answers known in advance, not recomputed. Pick labels
    no ImageNet category contains ("unicorn", "griffin"): the other ranks keep theirs."""
    Prediction.objects.filter(classification_id=upload.classification_id, rank=rank).update(label=label)
    if rank == 1:
        Classification.objects.filter(pk=upload.classification_id).update(top_label=label)


def patch_every_classifier(monkeypatch, wrap) -> None:
    """Replace classify() on both classifier kinds (batching or not) with wrap(real)."""
    for kind in (Classifier, BatchingClassifier):
        monkeypatch.setattr(kind, "classify", wrap(kind.classify))


@pytest.fixture
def inference_calls(monkeypatch) -> Iterator[list[int]]:
    """Counts the images the real classifier is asked to classify (one entry per call),
    whichever Classifier instance (batching or not) the process uses."""
    calls: list[int] = []

    def counting(real_classify):
        def counting_classify(self, images, top_k=3):
            calls.append(len(images))
            return real_classify(self, images, top_k=top_k)

        return counting_classify

    patch_every_classifier(monkeypatch, counting)
    yield calls
