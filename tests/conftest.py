"""Shared test set-up: a real, small model artifact prepared once per session.

The engine is never faked here: tests classify with a random-weights ResNet-18 that
went through the same prepare_model path as a user's custom weights.
"""

import os
import shutil
import uuid
from pathlib import Path

import pytest
import torch
import torchvision

from recognition.configured_classifier import reset_classifier
from recognition.engine import model_store
from recognition.engine.prepare import prepare

pytest_plugins = ["tests.web_fixtures"]

# The live cluster tests need the servers scripts/with-cluster starts (make test-cluster).
collect_ignore = [] if os.environ.get("NODE_A_URL") else ["cluster"]


@pytest.fixture(scope="session")
def random_weights_file(tmp_path_factory) -> Path:
    torch.manual_seed(1234)
    path = tmp_path_factory.mktemp("weights") / "resnet18-random.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    return path


@pytest.fixture(scope="session")
def prepared_models_dir(tmp_path_factory, random_weights_file) -> Path:
    models_dir = tmp_path_factory.mktemp("data") / "models"
    prepare(models_dir, weights_file=random_weights_file, custom=True)
    return models_dir


@pytest.fixture(scope="session")
def session_model_key(prepared_models_dir) -> str:
    return model_store.sole_build(prepared_models_dir)


@pytest.fixture(scope="session")
def two_models_dir(tmp_path_factory, prepared_models_dir, session_model_key):
    """The session's model plus a second one with other random weights: (dir, first, second)."""
    models_dir = tmp_path_factory.mktemp("two-models") / "models"
    shutil.copytree(prepared_models_dir, models_dir)
    torch.manual_seed(99)
    weights = models_dir.parent / "other-weights.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)
    second = prepare(models_dir, weights_file=weights, custom=True).manifest.key
    assert second != session_model_key
    return models_dir, session_model_key, second


@pytest.fixture(scope="session")
def lite0_models_dir(tmp_path_factory) -> tuple[Path, str]:
    """The real EfficientNet-Lite0 with its ImageNet weights, prepared once: (dir, key).
    Other builds may be added beside it (fine-tuned versions), so name it by its key."""
    models_dir = tmp_path_factory.mktemp("lite0") / "models"
    return models_dir, prepare(models_dir, model="efficientnet_lite0").manifest.key


@pytest.fixture
def served_from_the_active_row(settings):
    """No pinned model: the process serves the newest ActiveModel row, checked on every
    call (a check interval of 0), as every node does within its interval."""
    settings.RECOGNITION_MODEL = None
    settings.RECOGNITION_MODEL_CHECK_SECONDS = 0
    return settings


@pytest.fixture(autouse=True)
def recognition_settings(settings, tmp_path, prepared_models_dir, session_model_key, monkeypatch):
    """Every test gets the session's model, its own media folder and torch cache. The
    model is pinned (RECOGNITION_MODEL), so a test reads no active-model row unless it
    unpins it (tests/test_active_model_switch.py)."""
    settings.RECOGNITION_MODELS_DIR = prepared_models_dir
    settings.RECOGNITION_MODEL = session_model_key
    settings.MEDIA_ROOT = tmp_path / "media"
    # Static files from the source folders, whether or not collectstatic ran here.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    settings.WHITENOISE_USE_FINDERS = True
    settings.STATIC_ROOT = None
    if settings.RECOGNITION_S3_BUCKET:
        # The object store is shared by the whole run: each test its own key prefix, as
        # each has its own MEDIA_ROOT (Django resets default_storage on this change).
        files = settings.STORAGES["default"]
        options = {**files.get("OPTIONS", {}), "location": f"tests/{uuid.uuid4().hex}"}
        settings.STORAGES = {**settings.STORAGES, "default": {**files, "OPTIONS": options}}
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    yield settings
    # The session model stays loaded across tests; models a test pointed the settings
    # at are dropped with it, so they do not pile up in memory.
    if (
        settings.RECOGNITION_MODELS_DIR != prepared_models_dir
        or settings.RECOGNITION_MODEL != session_model_key
    ):
        reset_classifier()


@pytest.fixture
def no_model(settings, tmp_path):
    """A server on which no model has been prepared."""
    settings.RECOGNITION_MODELS_DIR = tmp_path / "no-models"
    return settings.RECOGNITION_MODELS_DIR


@pytest.fixture
def models_copy(settings, tmp_path, prepared_models_dir) -> Path:
    """The session's models, copied so a test may damage or add to them, and served."""
    copy = tmp_path / "models-copy"
    shutil.copytree(prepared_models_dir, copy, symlinks=True)
    settings.RECOGNITION_MODELS_DIR = copy
    return copy
