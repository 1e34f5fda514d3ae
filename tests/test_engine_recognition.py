"""Real recognition: EfficientNet-Lite0, prepared offline from the weights its package
ships, names what is in well-known photos that come with matplotlib and scikit-image."""

from pathlib import Path

import matplotlib
import pytest
import skimage

from recognition.engine.images import decode_image
from recognition.engine.prepare import prepare
from recognition.engine.classifier import Classifier, ScoredLabel

CATS = {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}
ROCKETS = {"missile", "projectile", "space shuttle"}
SAMPLE_PHOTOS = Path(matplotlib.get_data_path()) / "sample_data"
SKIMAGE_PHOTOS = Path(skimage.data_dir)


@pytest.fixture(scope="session")
def lite0(tmp_path_factory) -> Classifier:
    models_dir = tmp_path_factory.mktemp("lite0") / "models"
    outcome = prepare(models_dir, model="efficientnet_lite0")
    assert outcome.manifest.weights_source == "package"
    return Classifier(models_dir)


def _top(classifier: Classifier, photo: Path, k: int) -> list[ScoredLabel]:
    (result,) = classifier.classify([decode_image(photo.read_bytes()).image], top_k=k)
    return list(result.predictions)


def test_grace_hopper_wears_a_military_uniform_in_the_top_five(lite0):
    labels = [p.label for p in _top(lite0, SAMPLE_PHOTOS / "grace_hopper.jpg", 5)]

    assert "military uniform" in labels


def test_chelsea_is_first_of_all_a_cat(lite0):
    first = _top(lite0, SKIMAGE_PHOTOS / "chelsea.png", 1)[0]

    assert first.label in CATS


def test_the_coffee_photo_is_first_of_all_an_espresso(lite0):
    first = _top(lite0, SKIMAGE_PHOTOS / "coffee.png", 1)[0]

    assert first.label == "espresso"


def test_the_rocket_photo_is_first_of_all_a_missile_projectile_or_space_shuttle(lite0):
    first = _top(lite0, SKIMAGE_PHOTOS / "rocket.jpg", 1)[0]

    assert first.label in ROCKETS
