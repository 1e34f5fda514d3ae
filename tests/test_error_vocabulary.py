"""One error vocabulary: every error the upload service can answer with has one status,
one code and one sentence, the same from the API and from the upload page, and none of
them tells a client where the server keeps its files, what its hosts are called or how
its code failed. The details go to the log instead."""

from __future__ import annotations

import errno
import json
import re
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings
from django.db import OperationalError

from recognition import services, storage
from tests.web_fixtures import as_upload, image_bytes, png_claiming_size

pytestmark = pytest.mark.django_db

API = "/api/v1/classifications/"
PAGE = "/"
# What an injected fault's own text names: none of it may reach a client.
INTERNAL_HOST = "db-primary.internal.example"
INTERNAL_PATH = "/srv/secret-volume/images"
# An absolute file-system path: a slash-led run of two or more path segments.
ABSOLUTE_PATH = re.compile(r"(?<![\w.:/])/(?:[\w.-]+/)+[\w.-]+")


@dataclass(frozen=True)
class Case:
    status: int
    code: str
    data: bytes  # what is uploaded
    arrange: Callable[..., None] = lambda **_: None  # breaks the server beforehand


def _copy_models(settings, tmp_path: Path, prepared_models_dir: Path) -> Path:
    copy = tmp_path / "models-copy"
    shutil.copytree(prepared_models_dir, copy, symlinks=True)
    settings.RECOGNITION_MODELS_DIR = copy
    [manifest] = copy.glob("*/manifest.json")
    return manifest.parent


def _no_model(settings, tmp_path, **_):
    settings.RECOGNITION_MODELS_DIR = tmp_path / "no-models"


def _manifest_missing(settings, tmp_path, prepared_models_dir, **_):
    (_copy_models(settings, tmp_path, prepared_models_dir) / "manifest.json").unlink()


def _manifest_unreadable(settings, tmp_path, prepared_models_dir, **_):
    (_copy_models(settings, tmp_path, prepared_models_dir) / "manifest.json").write_text("{")


def _artifact_missing(backend: str, name: str):
    def arrange(settings, tmp_path, prepared_models_dir, **_):
        settings.RECOGNITION_BACKEND = backend
        (_copy_models(settings, tmp_path, prepared_models_dir) / name).unlink()

    return arrange


def _artifact_corrupt(backend: str, name: str):
    def arrange(settings, tmp_path, prepared_models_dir, **_):
        settings.RECOGNITION_BACKEND = backend
        (_copy_models(settings, tmp_path, prepared_models_dir) / name).write_bytes(b"garbage")

    return arrange


def _unknown_backend(settings, **_):
    settings.RECOGNITION_BACKEND = "tensorflow"


def _disk_error(number: int, words: str):
    def arrange(monkeypatch, **_):
        def failing(name, data):
            raise storage.StorageError(number, words, f"{INTERNAL_PATH}/ab/cd/{'0' * 64}.jpg")

        monkeypatch.setattr(storage, "save_if_missing", failing)

    return arrange


def _database_down(monkeypatch, **_):
    def failing(*args, **kwargs):
        raise OperationalError(
            f'connection to server at "{INTERNAL_HOST}" (10.1.2.3), port 5432 failed: '
            f'could not open "{INTERNAL_PATH}/.s.PGSQL.5432"'
        )

    monkeypatch.setattr(services, "_upload_once", failing)


def _small_limit(settings, **_):
    settings.RECOGNITION_MAX_UPLOAD_BYTES = 1000


_PICTURE = image_bytes("PNG", (64, 48), seed=41)
CASES = {
    "an empty file": Case(400, "empty_file", b""),
    "a text file": Case(415, "unsupported_type", b"just some words, not a picture\n"),
    "a truncated JPEG": Case(400, "corrupt_image", image_bytes("JPEG", (256, 256), 7)[:3000]),
    "a picture with too many pixels": Case(400, "too_many_pixels", png_claiming_size(9000, 9000)),
    "a file over the byte limit": Case(413, "too_large", image_bytes("PNG", (64, 64), 3), _small_limit),
    "no prepared model": Case(503, "model_unavailable", _PICTURE, _no_model),
    "a missing manifest": Case(503, "model_unavailable", _PICTURE, _manifest_missing),
    "an unreadable manifest": Case(503, "model_unavailable", _PICTURE, _manifest_unreadable),
    "a missing ONNX file": Case(503, "model_unavailable", _PICTURE, _artifact_missing("onnxruntime", "model.onnx")),
    "a corrupt ONNX file": Case(503, "model_unavailable", _PICTURE, _artifact_corrupt("onnxruntime", "model.onnx")),
    "a missing TorchScript file": Case(503, "model_unavailable", _PICTURE, _artifact_missing("torchscript", "model.ts")),
    "a corrupt TorchScript file": Case(503, "model_unavailable", _PICTURE, _artifact_corrupt("torchscript", "model.ts")),
    "an unknown backend": Case(503, "model_unavailable", _PICTURE, _unknown_backend),
    "a full disk": Case(507, "storage_full", _PICTURE, _disk_error(errno.ENOSPC, "No space left on device")),
    "an unwritable image folder": Case(503, "storage_unavailable", _PICTURE, _disk_error(errno.EACCES, "Permission denied")),
    "the database down": Case(503, "database_unavailable", _PICTURE, _database_down),
}


def _server_internals(tmp_path: Path) -> list[str]:
    """Strings that only the server knows."""
    return [
        str(tmp_path),
        str(Path(settings.RECOGNITION_MODELS_DIR)),
        str(Path(settings.MEDIA_ROOT)),
        str(Path(__file__).resolve().parents[1]),  # the code
        sys.prefix,  # the virtualenv
        INTERNAL_HOST,
        INTERNAL_PATH,
        "10.1.2.3",
        "Traceback",
        'File "',
    ]


@pytest.fixture
def arranged(request, settings, tmp_path, prepared_models_dir, monkeypatch) -> Case:
    case = CASES[request.param]
    case.arrange(
        settings=settings,
        tmp_path=tmp_path,
        prepared_models_dir=prepared_models_dir,
        monkeypatch=monkeypatch,
    )
    return case


@pytest.mark.parametrize("arranged", list(CASES), indirect=True)
def test_each_error_has_one_status_code_and_message_and_reveals_no_server_internals(
    arranged, alice_api, alice_client, tmp_path
):
    api = alice_api.post(API, {"image": as_upload(arranged.data, "photo.png")}, format="multipart")
    page = alice_client.post(PAGE, {"images": as_upload(arranged.data, "photo.png")})

    assert (api.status_code, page.status_code) == (arranged.status, arranged.status)
    error = api.json()["error"]
    assert error["code"] == arranged.code
    message = error["message"]
    assert message.strip() and not ABSOLUTE_PATH.search(message), message
    # The page tells the person the same sentence as the API tells a program.
    html = page.content.decode()
    assert _escaped(message) in html
    for secret in _server_internals(tmp_path):
        assert secret not in json.dumps(api.json()), secret
        assert secret not in html, secret


def test_the_fix_for_a_missing_model_is_named_for_the_operator(alice_api, no_model):
    response = alice_api.post(API, {"image": as_upload(_PICTURE, "photo.png")}, format="multipart")

    message = response.json()["error"]["message"]
    assert "no model is prepared" in message and "python manage.py prepare_model" in message


def test_the_models_endpoint_without_a_model_names_no_server_path(alice_api, no_model):
    response = alice_api.get("/api/v1/models/active/")

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "model_unavailable"
    assert str(no_model) not in response.content.decode()
    assert not ABSOLUTE_PATH.search(response.json()["error"]["message"])


def test_the_details_of_a_server_side_failure_reach_the_log(alice_api, monkeypatch, caplog):
    _database_down(monkeypatch)

    alice_api.post(API, {"image": as_upload(_PICTURE, "photo.png")}, format="multipart")

    assert INTERNAL_HOST in caplog.text


def _escaped(text: str) -> str:
    from django.utils.html import escape

    return str(escape(text))


def test_the_api_schema_documents_every_status_an_upload_can_answer_with(client):
    response = client.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")

    documented = set(response.json()["paths"][API]["post"]["responses"])
    answered = {str(case.status) for case in CASES.values()}
    assert answered <= documented, answered - documented
