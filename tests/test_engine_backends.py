"""Both runtimes a prepared model ships for: recorded, verified, and in agreement."""

import hashlib

import numpy as np
import pytest
from PIL import Image

from recognition.engine.artifact import MAX_ABS_DIFF
from recognition.engine.manifest import Manifest
from recognition.engine.model_store import sole_build
from recognition.engine.backends import BACKENDS, artifact_for
from recognition.engine.classifier import Classifier, ModelUnavailable


def _manifest(models_dir) -> Manifest:
    return Manifest.read(models_dir / sole_build(models_dir))


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_manifest_records_each_backends_artifact_and_its_hash(prepared_models_dir, backend):
    path, recorded = artifact_for(_manifest(prepared_models_dir), backend)

    assert path.is_file()
    assert recorded == hashlib.sha256(path.read_bytes()).hexdigest()


def test_both_artifacts_were_checked_against_the_eager_model(prepared_models_dir):
    manifest = _manifest(prepared_models_dir)

    assert 0 <= manifest.max_abs_diff <= MAX_ABS_DIFF
    assert 0 <= manifest.onnx_max_abs_diff <= MAX_ABS_DIFF


def test_both_backends_give_the_same_labels_and_scores(prepared_models_dir):
    pixels = np.random.default_rng(3).integers(0, 256, (200, 300, 3), dtype=np.uint8)
    picture = Image.fromarray(pixels)

    results = [
        Classifier(prepared_models_dir, backend=backend).classify([picture], top_k=5)[0]
        for backend in BACKENDS
    ]

    first, second = (result.predictions for result in results)
    assert [p.index for p in first] == [p.index for p in second]
    assert all(abs(a.score - b.score) <= 1e-4 for a, b in zip(first, second))
    assert results[0].model == results[1].model


def test_an_unknown_backend_is_refused_with_the_choices(prepared_models_dir):
    with pytest.raises(ModelUnavailable, match="torchscript, onnxruntime"):
        Classifier(prepared_models_dir, backend="tensorflow").identity()
