"""What users and operators notice when what the service stands on fails: the model file,
the database, the disk, a worker process. A clear status and message, nothing half-written,
and recovery without a restart."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.db import connection

from recognition.engine.manifest import Manifest
from recognition.engine.model_store import sole_build
from recognition.engine.backends import BACKENDS, artifact_for
from recognition.models import StoredImage, Upload
from recognition.storage_backends import AtomicFileSystemStorage
from tests.helpers import REPO
from tests.live_service import free_port, live_data
from tests.web_fixtures import as_upload, local_disk_only, media_files

API = "/api/v1/classifications/"
HEALTH = "/api/v1/health/"


def _post_image(client, data: bytes):
    return client.post(API, {"image": as_upload(data)}, format="multipart")


# --- The model artifact -------------------------------------------------------------


@pytest.fixture(params=BACKENDS)
def served_artifact(request, settings, models_copy) -> Path:
    """The file the configured backend loads, in a copy of the models that may be broken:
    model.ts for TorchScript, model.onnx for ONNX Runtime."""
    settings.RECOGNITION_BACKEND = request.param
    manifest = Manifest.read(models_copy / sole_build(models_copy))
    path, _ = artifact_for(manifest, request.param)
    assert path.is_file()
    return path


def _assert_model_unavailable(response, models_dir: Path) -> None:
    """503, the stable code, a sentence that says how to fix it, and no server path."""
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "model_unavailable"
    assert "prepare_model" in error["message"]
    assert str(models_dir) not in error["message"]


@pytest.mark.django_db
def test_uploads_and_health_answer_503_while_the_model_artifact_is_missing_and_recover_once_it_is_back(
    alice_api, client, models_copy, served_artifact, make_image, tmp_path
):
    assert _post_image(alice_api, make_image()).status_code == 201
    aside = tmp_path / "aside"
    served_artifact.rename(aside)

    response = _post_image(alice_api, make_image())
    health = client.get(HEALTH)

    _assert_model_unavailable(response, models_copy)
    assert health.status_code == 503 and health.json()["model_loaded"] is False

    aside.rename(served_artifact)
    assert _post_image(alice_api, make_image()).status_code == 201
    assert client.get(HEALTH).status_code == 200
    assert Upload.objects.count() == 2 and len(media_files()) == 2


@pytest.mark.django_db
def test_a_corrupt_model_artifact_answers_503_and_the_restored_one_serves_again(
    alice_api, client, models_copy, served_artifact, make_image
):
    assert _post_image(alice_api, make_image()).status_code == 201
    original = served_artifact.read_bytes()
    served_artifact.write_bytes(original[: len(original) // 2] + b"garbage")

    response = _post_image(alice_api, make_image())

    _assert_model_unavailable(response, models_copy)
    assert client.get(HEALTH).status_code == 503
    assert Upload.objects.count() == 1 and len(media_files()) == 1

    restoring = served_artifact.with_suffix(".restore")
    restoring.write_bytes(original)
    restoring.replace(served_artifact)
    assert _post_image(alice_api, make_image()).status_code == 201
    assert client.get(HEALTH).status_code == 200


# --- The database -------------------------------------------------------------------


@contextmanager
def database_down(tmp_path: Path):
    """Points the connection at a database that is not there: a missing SQLite file in a
    missing folder, or a PostgreSQL port nothing listens on."""
    saved = dict(connection.settings_dict)
    connection.close()
    if connection.vendor == "sqlite":
        connection.settings_dict["NAME"] = str(tmp_path / "no-such-folder" / "db.sqlite3")
    else:
        connection.settings_dict.update(HOST="127.0.0.1", PORT=str(free_port()))
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)


@pytest.mark.django_db(transaction=True)
def test_the_api_answers_503_in_json_while_the_database_is_down_and_writes_no_file(
    alice_api, client, make_image, tmp_path
):
    with database_down(tmp_path):
        response = _post_image(alice_api, make_image())
        health = client.get(HEALTH)

    assert response.status_code == 503
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "database_unavailable"
    assert "try again" in response.json()["error"]["message"]
    assert health.status_code == 503 and health.json()["database"] is False
    assert media_files() == []
    assert _post_image(alice_api, make_image()).status_code == 201  # and it is back


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("method, path", [("get", "/history/"), ("post", "/")])
def test_pages_show_a_readable_message_while_the_database_is_down(
    alice_client, make_image, tmp_path, method, path
):
    data = {"images": as_upload(make_image())} if method == "post" else {}
    with database_down(tmp_path):
        response = getattr(alice_client, method)(path, data)

    assert response.status_code == 503
    assert response["Content-Type"].startswith("text/html")
    text = response.content.decode()
    assert "Temporarily unavailable" in text
    assert "The database is unavailable right now" in text
    assert "Traceback" not in text
    assert media_files() == []


# --- The disk -----------------------------------------------------------------------


# Faults of a local disk (the object store's own are in test_object_store.py): what the
# kernel would say, injected where the local backend writes.


def _failing_write(error_number: int):
    def _save(self, name, content):
        raise OSError(error_number, os.strerror(error_number), self.path(name))

    return _save


@local_disk_only
@pytest.mark.django_db
def test_a_full_disk_answers_507_and_leaves_no_row_and_no_file(
    alice_api, make_image, monkeypatch
):
    monkeypatch.setattr(AtomicFileSystemStorage, "_save", _failing_write(errno.ENOSPC))

    response = _post_image(alice_api, make_image())

    assert response.status_code == 507
    assert response.json()["error"]["code"] == "storage_full"
    assert "no room left" in response.json()["error"]["message"]
    assert StoredImage.objects.count() == 0 and Upload.objects.count() == 0
    assert media_files() == []


@local_disk_only
@pytest.mark.django_db
def test_an_unwritable_media_folder_answers_503_and_leaves_no_row(
    alice_api, make_image, monkeypatch, settings
):
    media = Path(settings.MEDIA_ROOT)
    media.mkdir(parents=True)
    if os.geteuid() == 0:  # root writes anywhere: inject what the kernel would say
        monkeypatch.setattr(AtomicFileSystemStorage, "_save", _failing_write(errno.EACCES))
    else:
        media.chmod(0o500)
    try:
        response = _post_image(alice_api, make_image())
    finally:
        media.chmod(0o700)

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "storage_unavailable"
    assert "not writable" in response.json()["error"]["message"]
    assert StoredImage.objects.count() == 0 and Upload.objects.count() == 0
    assert media_files() == []


@local_disk_only
@pytest.mark.django_db
def test_the_upload_page_shows_a_readable_message_when_the_disk_is_full(
    alice_client, make_image, monkeypatch
):
    monkeypatch.setattr(AtomicFileSystemStorage, "_save", _failing_write(errno.ENOSPC))

    response = alice_client.post("/", {"images": as_upload(make_image())})

    assert response.status_code == 507
    assert "no room left to store images" in response.content.decode()
    assert Upload.objects.count() == 0


@local_disk_only
@pytest.mark.django_db
def test_a_full_disk_on_one_file_of_a_page_upload_keeps_the_others_results(
    alice_client, make_image, monkeypatch
):
    real_save, writes = AtomicFileSystemStorage._save, []

    def full_after_the_first(self, name, content):
        writes.append(name)
        if len(writes) > 1:
            _failing_write(errno.ENOSPC)(self, name, content)
        return real_save(self, name, content)

    monkeypatch.setattr(AtomicFileSystemStorage, "_save", full_after_the_first)
    files = [as_upload(make_image(seed=1), "first.jpg"), as_upload(make_image(seed=2), "second.jpg")]

    response = alice_client.post("/", {"images": files})

    html = response.content.decode()
    assert response.status_code == 200
    assert "no room left to store images" in html and "second.jpg" in html
    assert list(Upload.objects.values_list("original_filename", flat=True)) == ["first.jpg"]


# --- A worker killed mid-upload -----------------------------------------------------

STALL_BEFORE_COMMIT = """
import sys, time
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from recognition import services

create_upload = services._create_upload

def create_and_stall(*args, **kwargs):
    created = create_upload(*args, **kwargs)  # every row written, none committed
    print("in-transaction", flush=True)
    time.sleep(600)
    return created

services._create_upload = create_and_stall
user = get_user_model().objects.create_user("alice")
data = open(sys.argv[1], "rb").read()
services.upload_classify(user=user, file=SimpleUploadedFile("photo.jpg", data))
"""

ROWS = """
import json
from recognition.models import Classification, Prediction, StoredImage, Upload
print(json.dumps([m.objects.count() for m in (StoredImage, Classification, Prediction, Upload)]))
"""


@pytest.mark.slow
def test_a_process_killed_between_writing_the_file_and_committing_leaves_no_rows_and_an_orphan_the_cleanup_removes(
    tmp_path, prepared_models_dir, make_image
):
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(make_image())
    with live_data(tmp_path, prepared_models_dir) as data:
        script = "import django; django.setup()\n" + STALL_BEFORE_COMMIT
        worker = subprocess.Popen(
            [sys.executable, "-c", script, str(photo)],
            cwd=REPO, env=data.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        try:
            line = _read_line(worker, timeout=120)
            assert line == "in-transaction", worker.stderr.read()[-3000:]
            worker.send_signal(signal.SIGKILL)
        finally:
            worker.kill()
            worker.wait(timeout=30)
        rows = data.run_json(ROWS)
        [orphan] = [p for p in (data.media_root / "images").rglob("*") if p.is_file()]
        an_hour_and_more_ago = time.time() - 3700
        os.utime(orphan, (an_hour_and_more_ago, an_hour_and_more_ago))
        summary = data.manage("cleanup_orphans").strip().splitlines()[-1]

    assert rows == [0, 0, 0, 0]
    assert summary.startswith("Removed 1 orphan files")
    assert not orphan.exists()


def _read_line(process: subprocess.Popen, *, timeout: float) -> str:
    import selectors

    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            return ""
        return process.stdout.readline().strip()
