"""prepare_model publishes a build to the store (the object store under scripts/with-s3,
the local media folder otherwise) under models/<key>/: artifacts first, manifest last,
nothing again when the store holds it intact, and a damaged copy replaced."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from recognition import active_model, published_models, storage
from recognition.engine.manifest import ARTIFACT_NAME, MANIFEST_NAME, ONNX_NAME, Manifest
from tests.web_fixtures import media_files

pytestmark = pytest.mark.django_db


@pytest.fixture
def session_build(prepared_models_dir, session_model_key) -> Manifest:
    return Manifest.read(prepared_models_dir / session_model_key)


def _names(key: str) -> list[str]:
    return sorted(published_models.object_name(key, f) for f in (ARTIFACT_NAME, MANIFEST_NAME, ONNX_NAME))


def test_a_build_is_published_whole_under_its_key_and_read_back_the_same(session_build):
    key = session_build.key

    written = published_models.publish(session_build)

    assert sorted(written) == _names(key)
    assert written[-1].endswith(MANIFEST_NAME)  # last: a manifest means the build is whole
    assert media_files("models") == _names(key)
    assert published_models.published_keys() == [key]
    assert published_models.read_manifest(key) == session_build


def test_publishing_again_writes_nothing_but_replaces_a_damaged_copy(session_build):
    published_models.publish(session_build)
    onnx = published_models.object_name(session_build.key, ONNX_NAME)
    storage.save(onnx, b"damaged")

    assert published_models.publish(session_build) == [
        onnx,
        published_models.object_name(session_build.key, MANIFEST_NAME),
    ]
    assert published_models.publish(session_build) == []


def test_prepare_model_publishes_when_an_object_store_is_configured_and_activates(
    settings, tmp_path, random_weights_file, session_model_key
):
    settings.RECOGNITION_MODELS_DIR = tmp_path / "models"
    if not settings.RECOGNITION_S3_BUCKET:
        # The same code path on the local store: only the bucket's name is read here.
        settings.RECOGNITION_S3_BUCKET = "local-store"
    out = io.StringIO()

    call_command("prepare_model", "--custom", "--weights", str(random_weights_file), stdout=out)

    assert f"Published {session_model_key} to the object store" in out.getvalue()
    assert media_files("models") == _names(session_model_key)
    assert active_model.current_key() == session_model_key


def test_without_an_object_store_prepare_model_publishes_nothing(
    settings, tmp_path, random_weights_file
):
    if settings.RECOGNITION_S3_BUCKET:
        pytest.skip("an object store is configured (scripts/with-s3): the test above covers it")
    settings.RECOGNITION_MODELS_DIR = tmp_path / "models"

    call_command("prepare_model", "--custom", "--weights", str(random_weights_file), stdout=io.StringIO())

    assert media_files("models") == []
