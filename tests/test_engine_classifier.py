"""The process-wide Classifier: refuses a damaged or missing artifact, recovers without a
restart, follows prepare_model's active model, and shapes its results as promised."""

import shutil
from pathlib import Path

import pytest
import torch
import torchvision

from recognition.engine.manifest import Manifest
from recognition.engine.model_store import sole_build
from recognition.engine.backends import BACKENDS, artifact_for
from recognition.engine.prepare import prepare
from recognition.engine.classifier import Classifier, ModelUnavailable
from tests.helpers import noise_picture

NEW_LABELS = ["anemone", "barnacle", "coral", "mussel", "urchin"]


@pytest.fixture
def models_dir(prepared_models_dir, tmp_path) -> Path:
    """A private copy: these tests damage and switch models; the session's must stay intact."""
    copy = tmp_path / "models"
    shutil.copytree(prepared_models_dir, copy)
    return copy


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


def _artifact(models_dir: Path, backend: str) -> Path:
    manifest = Manifest.read(models_dir / sole_build(models_dir))
    return artifact_for(manifest, backend)[0]


def _flip_bytes(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 16] = bytes(b ^ 0xFF for b in data[middle : middle + 16])
    path.write_bytes(bytes(data))


def test_it_refuses_a_tampered_artifact_and_says_to_run_prepare_model(models_dir, backend):
    _flip_bytes(_artifact(models_dir, backend))
    classifier = Classifier(models_dir, backend=backend)

    with pytest.raises(ModelUnavailable, match="prepare_model"):
        classifier.classify([noise_picture(0)])
    assert not classifier.is_ready()


def test_it_refuses_an_artifact_tampered_with_after_it_was_loaded(models_dir, backend):
    classifier = Classifier(models_dir, backend=backend)
    classifier.classify([noise_picture(0)])

    _flip_bytes(_artifact(models_dir, backend))

    with pytest.raises(ModelUnavailable, match="does not match its manifest"):
        classifier.classify([noise_picture(0)])


def test_a_missing_artifact_makes_the_model_unavailable(models_dir, backend):
    _artifact(models_dir, backend).unlink()

    with pytest.raises(ModelUnavailable, match="prepare_model"):
        Classifier(models_dir, backend=backend).classify([noise_picture(0)])


def test_an_empty_models_folder_makes_the_model_unavailable(tmp_path):
    classifier = Classifier(tmp_path / "nothing-prepared")

    with pytest.raises(ModelUnavailable, match="prepare_model"):
        classifier.identity()


def test_the_same_classifier_recovers_when_the_artifact_comes_back(
    models_dir, tmp_path, backend
):
    classifier = Classifier(models_dir, backend=backend)
    before = classifier.classify([noise_picture(0)], top_k=5)[0].predictions
    artifact = _artifact(models_dir, backend)
    artifact.rename(tmp_path / "set-aside")
    with pytest.raises(ModelUnavailable):
        classifier.classify([noise_picture(0)])

    (tmp_path / "set-aside").rename(artifact)

    assert classifier.is_ready()
    after = classifier.classify([noise_picture(0)], top_k=5)[0].predictions
    assert [p.index for p in after] == [p.index for p in before]


@pytest.mark.parametrize(
    ("asked", "given"), [(0, 1), (-3, 1), (1, 1), (5, 5), (10_000, 1000)]
)
def test_top_k_is_clamped_between_one_and_the_number_of_categories(
    asked, given, prepared_models_dir
):
    (result,) = Classifier(prepared_models_dir).classify([noise_picture(0)], top_k=asked)

    scores = [p.score for p in result.predictions]
    assert len(result.predictions) == given
    assert scores == sorted(scores, reverse=True)
    if given == 1000:
        assert sum(scores) == pytest.approx(1.0, abs=1e-4)
        assert sorted(p.index for p in result.predictions) == list(range(1000))


def test_a_batch_returns_each_pictures_result_in_the_order_given(prepared_models_dir):
    classifier = Classifier(prepared_models_dir)
    pictures = [noise_picture(seed) for seed in range(4)]
    alone = [classifier.classify([p], top_k=1000)[0] for p in pictures]

    together = classifier.classify(pictures, top_k=1000)

    def vector(result) -> torch.Tensor:
        scores = torch.zeros(1000, dtype=torch.float64)
        for prediction in result.predictions:
            scores[prediction.index] = prediction.score
        return scores

    # The pictures must be told apart by their scores, or the order could not be seen.
    assert (vector(alone[0]) - vector(alone[1])).abs().max() > 1e-3
    assert len(together) == len(pictures)
    for batched, single in zip(together, alone):
        assert (vector(batched) - vector(single)).abs().max() < 1e-5


def _prepare_five_classes(models_dir, tmp_path):
    torch.manual_seed(7)
    weights = tmp_path / "five-classes.pth"
    torch.save(torchvision.models.resnet18(weights=None, num_classes=5).state_dict(), weights)
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(NEW_LABELS) + "\n")
    return prepare(models_dir, weights_file=weights, custom=True, labels_file=labels).manifest


def test_it_switches_to_another_prepared_model_when_told_without_a_restart(models_dir, tmp_path):
    classifier = Classifier(models_dir)
    first = classifier.identity()
    second_key = _prepare_five_classes(models_dir, tmp_path).key

    classifier.select(second_key)

    second = classifier.identity()
    assert first.num_categories == 1000
    assert second.version != first.version and second.num_categories == 5
    assert classifier.loaded_key() == second_key
    (result,) = classifier.classify([noise_picture(0)], top_k=10)
    assert {p.label for p in result.predictions} == set(NEW_LABELS)


def test_a_switch_to_a_damaged_model_is_refused_and_the_old_one_keeps_serving(
    models_dir, tmp_path, backend
):
    classifier = Classifier(models_dir, backend=backend)
    first = classifier.identity()
    second = _prepare_five_classes(models_dir, tmp_path)
    _flip_bytes(artifact_for(second, backend)[0])

    with pytest.raises(ModelUnavailable, match="does not match its manifest"):
        classifier.select(second.key)

    assert classifier.identity() == first
    assert classifier.loaded_key() == first.name + "-" + first.version
    (result,) = classifier.classify([noise_picture(0)], top_k=3)
    assert result.model == first


def test_a_broken_model_is_not_re_verified_on_every_request_until_its_files_change(
    models_dir, backend, monkeypatch
):
    import recognition.engine.backends as backends

    artifact = _artifact(models_dir, backend)
    original = artifact.read_bytes()
    _flip_bytes(artifact)
    classifier = Classifier(models_dir, backend=backend)
    assert not classifier.is_ready()
    hashed: list[Path] = []
    real_sha256 = backends.sha256_file
    monkeypatch.setattr(backends, "sha256_file", lambda path: hashed.append(path) or real_sha256(path))

    ready = [classifier.is_ready() for _ in range(5)]

    assert ready == [False] * 5 and hashed == []  # e.g. a public health probe, polled
    artifact.write_bytes(original)  # the fix changes the file, so it is tried at once
    assert classifier.is_ready()
