"""`manage.py activate_model KEY` and `--rollback`: say what they did, record it, and
refuse a key that is not prepared with one paragraph and a non-zero exit."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest
from django.core.management import CommandError, call_command

from recognition import active_model
from recognition.models import ActiveModel
from tests.helpers import REPO

pytestmark = pytest.mark.django_db


def _activate_model(*args: str) -> str:
    out = io.StringIO()
    call_command("activate_model", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def models(two_models_dir, settings):
    models_dir, first, second = two_models_dir
    settings.RECOGNITION_MODELS_DIR = models_dir
    return first, second


def test_it_activates_a_prepared_model_and_says_what_was_active_before(models, settings):
    first, second = models
    settings.RECOGNITION_MODEL = None
    settings.RECOGNITION_MODEL_CHECK_SECONDS = 5
    settings.RECOGNITION_TASK_SWEEP_SECONDS = 30
    _activate_model(first)

    said = _activate_model(second)

    assert f"{second} is now the active model (before: {first})" in said
    assert "web node serves it within 5 s" in said and "every worker within 30 s" in said
    assert active_model.current_key() == second
    assert ActiveModel.objects.first().activated_by is None  # a command, not a user


def test_rollback_goes_back_to_the_model_active_before(models):
    first, second = models
    _activate_model(first)
    _activate_model(second)

    said = _activate_model("--rollback")

    assert f"{first} is now the active model (before: {second})" in said
    assert active_model.current_key() == first


def test_a_key_that_is_not_prepared_is_refused_in_one_paragraph_listing_the_prepared_ones(models):
    first, second = models

    with pytest.raises(CommandError) as refused:
        _activate_model("resnet18-000000000000")

    message = str(refused.value)
    assert "not a prepared model" in message and first in message and second in message
    assert "\n" not in message.strip()
    assert not ActiveModel.objects.exists()


def test_it_needs_a_key_or_rollback(models):
    with pytest.raises(CommandError, match="Name the model to activate"):
        _activate_model()


def test_from_the_shell_a_bad_key_exits_non_zero_without_a_traceback(tmp_path):
    environment = {
        name: value
        for name, value in os.environ.items()
        # A fresh one-machine install: its own SQLite database and local files.
        if name not in ("DATABASE_URL", "RECOGNITION_S3_BUCKET", "REDIS_URL")
    }
    environment.update({"RECOGNITION_DATA_DIR": str(tmp_path / "data"), "SECRET_KEY": "t"})

    def manage(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=REPO,
            env=environment,
            capture_output=True,
            text=True,
            timeout=300,  # only catches a hang on a busy machine
        )

    assert manage("migrate", "--verbosity", "0").returncode == 0
    completed = manage("activate_model", "resnet18-000000000000")

    assert completed.returncode != 0
    last_line = completed.stderr.strip().splitlines()[-1]
    assert last_line.startswith("CommandError: 'resnet18-000000000000' is not a prepared model")
    assert "run `python manage.py prepare_model`" in last_line
    assert "Traceback" not in completed.stderr


def test_an_unpublished_key_while_the_store_is_unreachable_is_refused_naming_the_endpoint(
    models, settings
):
    from tests.test_object_store import unreachable

    first, _ = models
    with unreachable(settings), pytest.raises(CommandError) as refused:
        _activate_model("resnet18-000000000000")

    assert "object store cannot be reached" in str(refused.value)
    assert "AWS_S3_ENDPOINT_URL" in str(refused.value)
    assert not ActiveModel.objects.exists()
    with unreachable(settings):  # a build this node holds needs nothing from the store
        _activate_model(first)
    assert active_model.current_key() == first
