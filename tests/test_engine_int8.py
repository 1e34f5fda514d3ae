"""The optional int8 version of a prepared model: its own model version next to the fp32
one, verified like it, served by ONNX Runtime only, and never made active by accident.

Quantizes the session's random-weights ResNet-18 (with few calibration pictures, to stay
fast); bench/int8.py measures speed and agreement on real weights.
"""

import dataclasses
import hashlib
import io
import json
import shutil
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import skimage
import torch
from django.core.management import CommandError, call_command
from PIL import Image

from recognition import active_model
from recognition.configured_classifier import get_classifier
from recognition.engine import quantize
from recognition.engine.manifest import ARTIFACT_NAME, MANIFEST_NAME, ArtifactError, Manifest
from recognition.engine.model_store import resolve, sole_build
from recognition.engine.images import decode_image
from recognition.engine.preprocess import Preprocessor
from recognition.engine.classifier import Classifier, ModelUnavailable

REAL_PHOTOS = [
    Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg",
    *(Path(skimage.data_dir) / name for name in ("chelsea.png", "coffee.png", "rocket.jpg")),
]


@dataclasses.dataclass(frozen=True)
class Quantized:
    models_dir: Path
    fp32: Manifest
    int8: Manifest
    calibration: torch.Tensor


@pytest.fixture(scope="module")
def quantized(tmp_path_factory, prepared_models_dir) -> Quantized:
    """A copy of the session's models directory, its active model quantized once."""
    models_dir = tmp_path_factory.mktemp("int8") / "models"
    shutil.copytree(prepared_models_dir, models_dir)
    fp32 = Manifest.read(models_dir / sole_build(models_dir))
    preprocessor = Preprocessor(fp32.preprocessing)
    calibration = preprocessor.batch(quantize.synthetic_pictures(8, seed=0))
    check = preprocessor.batch(quantize.synthetic_pictures(8, seed=1))
    int8 = quantize.quantize(models_dir, fp32, calibration=calibration, check=check)
    return Quantized(models_dir, fp32, int8, calibration)


def _pictures() -> list[Image.Image]:
    """The four real photos and four pictures of seeded noise."""
    rng = np.random.default_rng(7)
    noise = [
        Image.fromarray(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)) for _ in range(4)
    ]
    return [decode_image(path.read_bytes()).image for path in REAL_PHOTOS] + noise


def _served_top1(quantized: Quantized, key: str, pictures) -> list[tuple[int, float]]:
    """Each picture's top class as the service gives it, and its lead over the second."""
    results = Classifier(quantized.models_dir, model=key).classify(pictures, top_k=2)
    return [(r.predictions[0].index, r.predictions[0].score - r.predictions[1].score) for r in results]


def _copy_version(manifest: Manifest, tmp_path: Path) -> Path:
    models_dir = tmp_path / "models"
    shutil.copytree(manifest.directory, models_dir / manifest.key)
    return models_dir


def test_quantizing_writes_a_separate_version_next_to_the_fp32_one(quantized):
    int8, fp32 = quantized.int8, quantized.fp32

    assert int8.key == f"{fp32.key}-int8" and int8.name == fp32.name
    assert int8.directory == quantized.models_dir / int8.key
    assert sorted(p.name for p in int8.directory.iterdir()) == [MANIFEST_NAME, "model.onnx"]
    assert (fp32.directory / ARTIFACT_NAME).is_file()
    assert Manifest.read(fp32.directory) == fp32
    assert not [p for p in quantized.models_dir.iterdir() if p.name.startswith(".")]


def test_the_manifest_records_the_int8_files_hash_and_how_it_was_made(quantized):
    manifest = Manifest.read(quantized.int8.directory)

    assert manifest == quantized.int8
    assert manifest.onnx_sha256 == hashlib.sha256(manifest.onnx_path.read_bytes()).hexdigest()
    assert manifest.quantization == "int8-static-qdq"
    assert manifest.quantized_from == quantized.fp32.key
    assert manifest.artifact_sha256 is None and manifest.max_abs_diff is None
    assert 0 < manifest.onnx_max_abs_diff < 1  # quantized, yet close


def test_the_recorded_agreement_is_the_share_of_check_pictures_given_fp32s_top_label(
    quantized, tmp_path
):
    """Quantized again with the same calibration (so the same int8 model), checked on a
    known set: three pictures on which the served int8 model gives fp32's top label and
    one on which it does not. Each is the clearest of its kind (the largest lead of both
    models' top label), so rounding between batch sizes cannot move it across a tie."""
    pool = quantize.synthetic_pictures(64, seed=2)
    fp32 = _served_top1(quantized, quantized.fp32.key, pool)
    int8 = _served_top1(quantized, quantized.int8.key, pool)
    clearest_first = sorted(range(len(pool)), key=lambda i: -min(fp32[i][1], int8[i][1]))
    agree = [i for i in clearest_first if fp32[i][0] == int8[i][0]]
    disagree = [i for i in clearest_first if fp32[i][0] != int8[i][0]]
    assert len(agree) >= 3 and disagree, "the pool no longer holds both kinds of picture"
    known = [pool[i] for i in (*agree[:3], disagree[0])]
    models_dir = _copy_version(quantized.fp32, tmp_path)
    fp32_copy = Manifest.read(models_dir / quantized.fp32.key)

    again = quantize.quantize(
        models_dir, fp32_copy, calibration=quantized.calibration,
        check=Preprocessor(fp32_copy.preprocessing).batch(known),
    )

    assert again.onnx_sha256 == quantized.int8.onnx_sha256  # the model the set was picked with
    assert again.top1_agreement == 0.75


def test_manifests_written_before_int8_existed_still_read(quantized, tmp_path):
    data = json.loads((quantized.fp32.directory / MANIFEST_NAME).read_text())
    for key in ("quantization", "quantized_from", "top1_agreement"):
        del data[key]
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(data))

    manifest = Manifest.read(tmp_path)

    assert manifest.quantization is None and manifest.top1_agreement is None
    assert manifest.artifact_sha256 == quantized.fp32.artifact_sha256


def test_int8_gives_the_fp32_top_label_for_nearly_all_pictures(quantized):
    pictures = _pictures()
    fp32, int8 = (
        Classifier(quantized.models_dir, model=key).classify(pictures, top_k=1)
        for key in (quantized.fp32.key, quantized.int8.key)
    )

    agreeing = sum(a.predictions[0].index == b.predictions[0].index for a, b in zip(fp32, int8))
    assert agreeing >= len(pictures) - 1
    assert int8[0].model.version == quantized.int8.version != fp32[0].model.version


def test_a_tampered_int8_file_is_refused(quantized, tmp_path):
    models_dir = _copy_version(quantized.int8, tmp_path)
    path = models_dir / quantized.int8.key / "model.onnx"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))

    with pytest.raises(ModelUnavailable, match="does not match its manifest"):
        Classifier(models_dir, model=quantized.int8.key).identity()


def test_the_torchscript_backend_is_refused_with_a_clear_message(quantized):
    classifier = Classifier(quantized.models_dir, model=quantized.int8.key, backend="torchscript")

    with pytest.raises(ModelUnavailable) as caught:
        classifier.identity()

    message = str(caught.value)
    assert "without a torchscript artifact" in message and "onnxruntime only" in message
    assert quantized.fp32.key in message


def test_quantizing_leaves_the_only_fp32_build_the_one_served_by_default(quantized):
    assert sole_build(quantized.models_dir) == quantized.fp32.key
    assert Classifier(quantized.models_dir).identity().version == quantized.fp32.version


def test_a_model_name_means_fp32_and_name_int8_the_quantized_version(quantized):
    name = quantized.fp32.name

    assert resolve(quantized.models_dir, name).key == quantized.fp32.key
    assert resolve(quantized.models_dir, f"{name}-int8").key == quantized.int8.key


def test_an_int8_version_that_agrees_too_little_may_not_be_activated(quantized):
    disagreeing = dataclasses.replace(quantized.int8, top1_agreement=0.95)

    with pytest.raises(ArtifactError, match=r"95\.0%.*99%"):
        quantize.check_may_be_active(disagreeing)


def test_an_int8_version_that_agrees_enough_may_be_activated(quantized, tmp_path):
    models_dir = _copy_version(quantized.int8, tmp_path)
    agreeing = dataclasses.replace(quantized.int8, top1_agreement=0.995)

    quantize.check_may_be_active(agreeing)

    classifier = Classifier(models_dir, model=quantized.int8.key)
    assert classifier.identity().version == quantized.int8.version


def test_an_int8_version_is_not_quantized_again(quantized):
    with pytest.raises(ArtifactError, match="already quantized"):
        quantize.quantize(quantized.models_dir, quantized.int8)


def test_a_tampered_fp32_model_is_not_quantized(quantized, tmp_path):
    models_dir = _copy_version(quantized.fp32, tmp_path)
    fp32 = Manifest.read(models_dir / quantized.fp32.key)
    with fp32.onnx_path.open("ab") as handle:
        handle.write(b"\0")

    with pytest.raises(ArtifactError, match="does not match its manifest"):
        quantize.quantize(models_dir, fp32)
    assert sorted(p.name for p in models_dir.iterdir()) == [fp32.key]


# prepare_model --int8


def _prepare_model(*args: str) -> str:
    out = io.StringIO()
    call_command("prepare_model", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


@pytest.mark.slow
@pytest.mark.django_db
def test_prepare_model_int8_adds_a_version_that_the_service_serves_when_asked(
    models_copy, settings
):
    fp32_key = sole_build(models_copy)
    int8_key = f"{fp32_key}-int8"

    first = _prepare_model("--int8")
    second = _prepare_model("--int8")

    assert f"Prepared the int8 version {int8_key}" in first
    assert f"RECOGNITION_MODEL={int8_key}" in first
    assert "already prepared" in second
    assert active_model.current_key() is None  # nothing was activated
    photo = decode_image(REAL_PHOTOS[0].read_bytes()).image
    (result,) = Classifier(models_copy, model=int8_key).classify([photo], top_k=3)
    assert len(result.predictions) == 3 and result.model.version.endswith("-int8")
    settings.RECOGNITION_MODEL = int8_key
    assert get_classifier().identity().version == result.model.version


@pytest.mark.slow
@pytest.mark.django_db
def test_prepare_model_int8_activate_obeys_the_agreement_rule(models_copy, monkeypatch):
    fp32_key = sole_build(models_copy)
    # No agreement reaches 101 %: refused, whatever the session's random weights give.
    monkeypatch.setattr(quantize, "DEFAULT_AGREEMENT", 1.01)
    with pytest.raises(CommandError) as refused:
        _prepare_model("--int8", "--activate")
    int8 = Manifest.read(models_copy / f"{fp32_key}-int8")
    assert f"{int8.top1_agreement:.1%}" in str(refused.value)
    assert f"RECOGNITION_MODEL={int8.key}" in str(refused.value)
    assert active_model.current_key() is None

    monkeypatch.setattr(quantize, "DEFAULT_AGREEMENT", 0.0)
    activated = _prepare_model("--int8", "--activate")

    assert "already prepared" in activated and "now the active model" in activated
    assert active_model.current_key() == int8.key
    # Asking for int8 again quantizes the active model's fp32 source: already done.
    assert "already prepared" in _prepare_model("--int8")


def test_prepare_model_refuses_activate_without_int8(models_copy):
    with pytest.raises(CommandError, match="--activate only goes with --int8"):
        _prepare_model("--activate")


@pytest.mark.django_db
def test_prepare_model_int8_without_any_model_says_to_prepare_one(settings, tmp_path):
    settings.RECOGNITION_MODELS_DIR = tmp_path / "empty"

    with pytest.raises(CommandError, match="No model is prepared"):
        _prepare_model("--int8")
    assert not settings.RECOGNITION_MODELS_DIR.exists()
