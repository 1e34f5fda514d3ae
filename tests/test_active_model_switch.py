"""Every process serves the active row's model and switches to a newly activated one by
itself, fetching a build it lacks from the store (the object store under
scripts/with-s3, the local media folder otherwise) and refusing one whose checksum does
not match: the old model keeps serving and an ERROR line says why."""

from __future__ import annotations

import logging
import shutil

import pytest
from django.conf import settings

from recognition import active_model, published_models, storage
from recognition.configured_classifier import get_classifier, refresh_active_model
from recognition.engine.backends import artifact_for
from recognition.engine.manifest import MANIFEST_NAME, Manifest
from recognition.engine.model_store import prepared_keys

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_models(two_models_dir, settings, served_from_the_active_row):
    models_dir, first, second = two_models_dir
    settings.RECOGNITION_MODELS_DIR = models_dir
    return first, second


@pytest.fixture
def node_with_the_first_model_only(two_models_dir, settings, served_from_the_active_row, tmp_path):
    """A node whose models directory (its cache) holds only the first build, while the
    second is published to the store, as prepare_model does with an object store."""
    source, first, second = two_models_dir
    cache = tmp_path / "node-models"
    cache.mkdir()
    shutil.copytree(source / first, cache / first)
    _publish_what_this_backend_runs(Manifest.read(source / second))
    settings.RECOGNITION_MODELS_DIR = cache
    active_model.activate(first)
    assert get_classifier().loaded_key() == first
    return cache, first, second


def _publish_what_this_backend_runs(manifest: Manifest) -> None:
    """As published_models.publish() does, but one artifact: the test store stays small."""
    path, _ = artifact_for(manifest, settings.RECOGNITION_BACKEND)
    storage.save_file(published_models.object_name(manifest.key, path.name), path)
    manifest_bytes = (manifest.directory / MANIFEST_NAME).read_bytes()
    storage.save(published_models.object_name(manifest.key, MANIFEST_NAME), manifest_bytes)


def _served_key() -> str:
    identity = get_classifier().identity()
    return f"{identity.name}-{identity.version}"


def _published_artifact(key: str) -> str:
    manifest = published_models.read_manifest(key)
    return published_models.object_name(key, artifact_for(manifest, settings.RECOGNITION_BACKEND)[0].name)


def test_a_newly_activated_model_is_served_by_the_same_classifier_without_a_restart(
    two_models, caplog
):
    first, second = two_models
    active_model.activate(first)
    classifier = get_classifier()
    assert _served_key() == first

    active_model.activate(second)
    with caplog.at_level(logging.INFO):
        assert _served_key() == second

    assert get_classifier() is classifier
    assert f"Serving model {second}" in caplog.messages


def test_the_row_is_read_at_most_once_per_check_interval(two_models, settings):
    first, second = two_models
    settings.RECOGNITION_MODEL_CHECK_SECONDS = 3600
    active_model.activate(first)
    assert _served_key() == first

    active_model.activate(second)

    assert _served_key() == first  # within the interval: not read again
    assert refresh_active_model() == second  # the worker's tick checks now
    assert _served_key() == second


def test_a_pinned_model_is_served_whatever_the_row_says(two_models, settings):
    first, second = two_models
    settings.RECOGNITION_MODEL = first
    active_model.activate(second)

    assert _served_key() == first


def test_without_any_activation_the_only_prepared_model_is_served(served_from_the_active_row):
    assert get_classifier().is_ready()


def test_a_node_fetches_a_model_it_lacks_from_the_store_and_serves_it(
    node_with_the_first_model_only,
):
    cache, first, second = node_with_the_first_model_only

    active_model.activate(second)

    assert _served_key() == second
    assert prepared_keys(cache) == sorted([first, second])
    fetched = Manifest.read(cache / second)
    wanted, _ = artifact_for(fetched, settings.RECOGNITION_BACKEND)
    # Only what this node's backend runs, beside its manifest; no staging leftovers.
    assert sorted(p.name for p in (cache / second).iterdir()) == sorted([MANIFEST_NAME, wanted.name])
    assert sorted(p.name for p in cache.iterdir()) == sorted([first, second])


def test_a_corrupted_artifact_in_the_store_is_refused_and_the_old_model_keeps_serving(
    node_with_the_first_model_only, caplog
):
    cache, first, second = node_with_the_first_model_only
    name = _published_artifact(second)
    with storage.open_file(name) as handle:
        damaged = bytearray(handle.read())
    damaged[len(damaged) // 2] ^= 0xFF
    storage.save(name, bytes(damaged))

    active_model.activate(second)
    with caplog.at_level(logging.INFO):
        assert _served_key() == first

    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert second in errors[0] and name in errors[0] and "does not match" in errors[0]
    assert f"Still serving {first}" in errors[0]
    assert sorted(p.name for p in cache.iterdir()) == [first]  # nothing installed
    assert not any("Serving model" in m for m in caplog.messages)

    active_model.rollback()  # back to the model this node kept
    with caplog.at_level(logging.INFO):
        assert _served_key() == first
    assert f"Serving model {first}" in caplog.messages


def test_a_corrupted_local_artifact_is_refused_and_the_old_model_keeps_serving(
    two_models_dir, settings, served_from_the_active_row, tmp_path, caplog
):
    source, first, second = two_models_dir
    models_dir = tmp_path / "models"
    shutil.copytree(source, models_dir)
    settings.RECOGNITION_MODELS_DIR = models_dir
    active_model.activate(first)
    assert _served_key() == first
    artifact, _ = artifact_for(Manifest.read(models_dir / second), settings.RECOGNITION_BACKEND)
    with artifact.open("r+b") as handle:
        handle.seek(artifact.stat().st_size // 2)
        byte = handle.read(1)
        handle.seek(-1, 1)
        handle.write(bytes([byte[0] ^ 0xFF]))

    active_model.activate(second)
    with caplog.at_level(logging.INFO):
        assert _served_key() == first

    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and second in errors[0] and artifact.name in errors[0]


def test_a_refused_model_is_not_fetched_again_on_every_check(
    node_with_the_first_model_only, caplog
):
    cache, first, second = node_with_the_first_model_only
    storage.save(_published_artifact(second), b"not a model")
    active_model.activate(second)

    with caplog.at_level(logging.INFO):
        served = [_served_key() for _ in range(3)]

    assert served == [first] * 3
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1
