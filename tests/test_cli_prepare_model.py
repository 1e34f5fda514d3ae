"""`manage.py prepare_model`: says what it did, is idempotent, and refuses bad weights
with one clear paragraph and a non-zero exit."""

import hashlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from recognition.engine.specs import RESNET18
from tests.helpers import REPO

pytestmark = pytest.mark.django_db


def _prepare_model(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("prepare_model", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def empty_models_dir(settings, tmp_path) -> Path:
    settings.RECOGNITION_MODELS_DIR = tmp_path / "models"
    return settings.RECOGNITION_MODELS_DIR


def _nothing_written(models_dir: Path) -> bool:
    return not models_dir.exists() or not any(models_dir.iterdir())


def test_it_prints_what_it_prepared_and_then_that_there_is_nothing_to_do(
    empty_models_dir, random_weights_file
):
    first, _ = _prepare_model("--custom", "--weights", str(random_weights_file))
    second, _ = _prepare_model("--custom", "--weights", str(random_weights_file))

    assert first.startswith("Prepared resnet18")
    assert "custom weights" in first and "now the active model" in first
    assert str(empty_models_dir) in first
    assert "already prepared" in second and "nothing to do" in second


def test_it_refuses_a_weights_file_whose_hash_differs_in_one_paragraph(
    empty_models_dir, random_weights_file
):
    with pytest.raises(CommandError) as caught:
        _prepare_model("--weights", str(random_weights_file))

    message = str(caught.value)
    assert hashlib.sha256(random_weights_file.read_bytes()).hexdigest() in message
    assert RESNET18.weights.sha256 in message
    assert "--custom" in message
    assert "\n" not in message.strip()
    assert _nothing_written(empty_models_dir)


def test_it_refuses_a_file_that_is_not_a_state_dict_in_one_paragraph(empty_models_dir, tmp_path):
    garbage = tmp_path / "weights.pth"
    garbage.write_bytes(b"definitely not a checkpoint\n" * 100)

    with pytest.raises(CommandError) as caught:
        _prepare_model("--custom", "--weights", str(garbage))

    message = str(caught.value)
    assert "cannot be read as a PyTorch state dict" in message and str(garbage) in message
    assert "\n" not in message.strip()
    assert _nothing_written(empty_models_dir)


def test_it_refuses_labels_without_custom(empty_models_dir, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\n")

    with pytest.raises(CommandError, match="--labels only goes with --custom"):
        _prepare_model("--labels", str(labels))
    assert _nothing_written(empty_models_dir)


def test_it_refuses_custom_without_a_weights_file(empty_models_dir):
    with pytest.raises(CommandError, match="--custom needs --weights"):
        _prepare_model("--custom")


def test_from_the_shell_a_bad_weights_file_exits_non_zero_without_a_traceback(tmp_path):
    garbage = tmp_path / "weights.pth"
    garbage.write_bytes(b"\x00" * 1000)
    environment = {**os.environ, "RECOGNITION_DATA_DIR": str(tmp_path / "data"), "SECRET_KEY": "t"}

    completed = subprocess.run(
        [sys.executable, "manage.py", "prepare_model", "--custom", "--weights", str(garbage)],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,  # only catches a hang: it imports torch on a busy machine
    )

    assert completed.returncode != 0
    last_line = completed.stderr.strip().splitlines()[-1]
    assert last_line.startswith("CommandError: The weights file") and last_line.endswith("again.")
    assert "Traceback" not in completed.stderr
    assert completed.stdout == ""
    assert not (tmp_path / "data" / "models").exists()


def test_before_any_database_exists_it_prepares_and_says_how_to_activate_later(
    tmp_path, random_weights_file
):
    """As in an image build: no database file is created (it would belong to the builder)."""
    environment = {
        name: value
        for name, value in os.environ.items()
        if name not in ("DATABASE_URL", "RECOGNITION_S3_BUCKET", "REDIS_URL")
    }
    environment.update({"RECOGNITION_DATA_DIR": str(tmp_path / "data"), "SECRET_KEY": "t"})
    command = ["manage.py", "prepare_model", "--custom", "--weights", str(random_weights_file)]

    completed = subprocess.run(
        [sys.executable, *command],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,  # only catches a hang: it imports torch on a busy machine
    )

    assert completed.returncode == 0, completed.stderr
    assert "Not recorded as the active model" in completed.stdout
    assert "python manage.py activate_model resnet18-" in completed.stdout
    assert not (tmp_path / "data" / "db.sqlite3").exists()
    assert [p.name for p in (tmp_path / "data" / "models").iterdir()][0].startswith("resnet18-")


def test_preparing_a_build_that_exists_again_keeps_the_model_someone_activated_since(
    settings, two_models_dir, random_weights_file
):
    # `make run` again, or a deployment's setup step, runs prepare_model on every start.
    from recognition import active_model

    models_dir, first, second = two_models_dir
    settings.RECOGNITION_MODELS_DIR = models_dir
    active_model.activate(first)
    active_model.activate(second)  # chosen by an operator since

    out, _ = _prepare_model("--custom", "--weights", str(random_weights_file))

    assert "already prepared" in out
    assert f"The active model stays {second}" in out
    assert active_model.current_key() == second
