"""Files in an S3-compatible object store (RECOGNITION_S3_BUCKET): images are private
objects in the bucket, never on the node's disk; downloads are streamed through the
authorised view; a store that is away, refuses the keys or has no such bucket gives 503
with nothing written, and stops a process from starting at all.

Tests marked needs_object_store run against the real SeaweedFS server of
scripts/with-s3 (make test-postgres); the unreachable store needs no server, so those
tests run in both passes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.http import FileResponse

from recognition import storage
from tests.helpers import REPO
from tests.live_service import free_port
from tests.web_fixtures import (
    assert_nothing_written,
    as_upload,
    bucket_keys,
    media_files,
    needs_object_store,
    s3_client,
)

pytestmark = pytest.mark.django_db

API = "/api/v1/classifications/"


def _post_image(client, data: bytes):
    return client.post(API, {"image": as_upload(data)}, format="multipart")


@contextmanager
def object_store(settings, **options):
    """The service's files in an object store configured with `options` (over this
    test's own: same bucket, key prefix and keys, unless `options` says otherwise)."""
    saved = settings.STORAGES
    own = saved["default"].get("OPTIONS", {}) if settings.RECOGNITION_S3_BUCKET else {}
    settings.STORAGES = {
        **saved,
        "default": {
            "BACKEND": "recognition.storage_backends.ObjectStoreStorage",
            "OPTIONS": {
                "bucket_name": "recognition",
                "location": f"tests/{uuid.uuid4().hex}",
                "region_name": "us-east-1",
                "addressing_style": "path",
                "default_acl": "private",
                **own,
                **options,
            },
        },
    }
    try:
        yield
    finally:
        settings.STORAGES = saved


def unreachable(settings):
    """A store whose port nothing listens on: the server is down, or the URL is wrong."""
    return object_store(
        settings,
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        access_key="nobody",
        secret_key="nothing",
    )


# --- Where the files are -------------------------------------------------------------


@needs_object_store
def test_an_uploaded_image_is_an_object_in_the_bucket_and_not_on_the_local_disk(
    alice_api, make_image, settings
):
    response = _post_image(alice_api, make_image())

    assert response.status_code == 201
    sha256 = response.json()["image"]["sha256"]
    assert bucket_keys() == [f"images/{sha256[:2]}/{sha256[2:4]}/{sha256}.jpg"]
    media = Path(settings.MEDIA_ROOT)
    assert not media.exists() or not [p for p in media.rglob("*") if p.is_file()]


@needs_object_store
def test_stored_images_are_private_objects_no_one_can_fetch_by_url(
    alice_api, make_image, settings
):
    sent_acls = []  # what the service asked for, on its real requests to the server
    client = default_storage.connection.meta.client
    record = lambda request, **_: sent_acls.append(request.headers.get("x-amz-acl", b"").decode())  # noqa: E731
    client.meta.events.register("before-send.s3.PutObject", record)
    try:
        assert _post_image(alice_api, make_image()).status_code == 201
    finally:
        client.meta.events.unregister("before-send.s3.PutObject", record)
    [name] = bucket_keys()
    options = settings.STORAGES["default"]["OPTIONS"]
    key = f"{options['location']}/{name}"

    grants = s3_client().get_object_acl(Bucket=options["bucket_name"], Key=key)["Grants"]
    url = f"{settings.AWS_S3_ENDPOINT_URL}/{options['bucket_name']}/{key}"
    with pytest.raises(urllib.error.HTTPError) as anonymous:
        urllib.request.urlopen(url, timeout=30)

    assert sent_acls == ["private"]
    assert [grant["Permission"] for grant in grants] == ["FULL_CONTROL"]
    assert not [g for g in grants if "URI" in g["Grantee"]]  # no AllUsers, no AuthenticatedUsers
    assert anonymous.value.code == 403


def test_the_image_download_is_streamed_from_the_storage_in_chunks(
    alice_api, alice_client, make_image, monkeypatch
):
    data = make_image(size=(600, 400))
    upload_id = _post_image(alice_api, data).json()["id"]
    opened = []  # the storage's own file or object stream, as the view got it
    real_open = storage.open_file
    monkeypatch.setattr(storage, "open_file", lambda name: opened.append(real_open(name)) or opened[-1])

    response = alice_client.get(f"/uploads/{upload_id}/image")

    assert isinstance(response, FileResponse) and response.streaming
    assert int(response["Content-Length"]) == len(data) > 2 * FileResponse.block_size
    [source] = opened
    chunks = iter(response.streaming_content)
    first = next(chunks)
    # Only what was sent has been read from the storage, not the whole file beforehand.
    assert len(first) == FileResponse.block_size
    assert _bytes_read(source) == FileResponse.block_size
    assert first + b"".join(chunks) == data
    response.close()


def _bytes_read(source) -> int:
    # A local file's position, or how much of the object's HTTP body botocore has read.
    return source.tell() if hasattr(source, "tell") else source._body.tell()


# --- The store away or refusing: 503, nothing written --------------------------------


def _assert_storage_unavailable(response) -> None:
    assert response.status_code == 503
    assert response["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == "storage_unavailable"
    assert "Nothing was saved" in error["message"]
    assert "127.0.0.1" not in error["message"]


def test_an_unreachable_object_store_answers_503_and_writes_nothing(alice_api, make_image, settings):
    with unreachable(settings):
        response = _post_image(alice_api, make_image())

    _assert_storage_unavailable(response)
    assert_nothing_written()


def test_the_upload_page_says_images_cannot_be_stored_while_the_store_is_unreachable(
    alice_client, make_image, settings
):
    with unreachable(settings):
        response = alice_client.post("/", {"images": as_upload(make_image(), "cat.jpg")})

    text = response.content.decode()
    assert response.status_code == 503
    assert "cannot store images right now" in text and "Traceback" not in text
    assert_nothing_written()


def test_a_download_while_the_store_is_unreachable_is_503_not_404(
    alice_api, alice_client, make_image, settings
):
    upload_id = _post_image(alice_api, make_image()).json()["id"]

    with unreachable(settings):
        page = alice_client.get(f"/uploads/{upload_id}/image")

    assert page.status_code == 503
    assert "cannot read its stored images" in page.content.decode()


@needs_object_store
def test_a_store_refusing_the_secret_key_answers_503_and_writes_nothing(
    alice_api, make_image, settings
):
    with object_store(settings, secret_key="not-the-secret"):
        response = _post_image(alice_api, make_image())

    _assert_storage_unavailable(response)
    assert_nothing_written()
    assert bucket_keys() == []


@needs_object_store
def test_a_missing_bucket_answers_503_and_writes_nothing(alice_api, make_image, settings):
    with object_store(settings, bucket_name=f"no-such-bucket-{uuid.uuid4().hex[:8]}"):
        response = _post_image(alice_api, make_image())

    _assert_storage_unavailable(response)
    assert_nothing_written()
    assert bucket_keys() == []


# --- The check that keeps a misconfigured process from starting -----------------------


def _check_errors() -> str:
    with pytest.raises(SystemCheckError) as failed:
        call_command("check")
    return str(failed.value)


def test_the_check_reports_an_unreachable_store_naming_the_endpoint_variable(settings):
    with unreachable(settings):
        errors = _check_errors()

    assert "recognition.E101" in errors
    assert "cannot be reached" in errors and "AWS_S3_ENDPOINT_URL" in errors


@needs_object_store
def test_the_check_reports_refused_keys_naming_the_key_variables(settings):
    with object_store(settings, secret_key="not-the-secret"):
        errors = _check_errors()

    assert "refuses the credentials" in errors
    assert "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" in errors
    assert "not-the-secret" not in errors


@needs_object_store
def test_the_check_reports_a_missing_bucket_naming_the_bucket_variable(settings):
    with object_store(settings, bucket_name="no-such-bucket"):
        errors = _check_errors()

    assert "The bucket no-such-bucket named by RECOGNITION_S3_BUCKET does not exist" in errors


@needs_object_store
def test_the_check_passes_on_the_real_bucket():
    call_command("check")


def _start(command: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        command,
        cwd=REPO,
        env={**os.environ, "RECOGNITION_DATA_DIR": str(tmp_path), "PORT": str(free_port()), **env},
        capture_output=True,
        text=True,
        timeout=180,  # only catches a hang: the check gives up within seconds
    )


def _unreachable_env() -> dict[str, str]:
    return {
        "RECOGNITION_S3_BUCKET": "recognition",
        "AWS_S3_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
        "AWS_ACCESS_KEY_ID": "nobody",
        "AWS_SECRET_ACCESS_KEY": "hunter2",
    }


def test_gunicorn_refuses_to_start_while_the_store_is_unreachable(tmp_path):
    result = _start([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"], tmp_path,
                    **_unreachable_env())

    assert result.returncode != 0
    assert "gunicorn cannot start:" in result.stderr
    assert "AWS_S3_ENDPOINT_URL" in result.stderr
    assert "Booting worker" not in result.stderr
    assert "Traceback" not in result.stderr and "hunter2" not in result.stderr


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("store.example:8333", "has scheme store.example"),
        ("http://store.example:port", "has a bad port"),
        ("http://key:hunter2@store.example", "carries a user"),
    ],
)
def test_a_malformed_endpoint_url_stops_manage_py_with_a_paragraph_naming_it(
    tmp_path, value, reason
):
    result = _start([sys.executable, "manage.py", "check"], tmp_path,
                    RECOGNITION_S3_BUCKET="recognition", AWS_S3_ENDPOINT_URL=value)

    assert result.returncode != 0
    assert result.stderr.startswith("manage.py cannot start: AWS_S3_ENDPOINT_URL must be")
    assert reason in result.stderr
    assert "Traceback" not in result.stderr and "hunter2" not in result.stderr
