"""The served model equals the textbook one: our artifact + Preprocessor give the same
probabilities as torchvision's eager ResNet-18 fed by its reference transform, for the
session's random-weights model, on pictures of every shape and mode users send."""

import io
from collections.abc import Callable

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from recognition.engine.backends import BACKENDS
from recognition.engine.images import decode_image
from recognition.engine.preprocess import Preprocessing, Preprocessor
from recognition.engine.classifier import Classifier
from tests.helpers import gradient_picture

ORIENTATION_TAG = 0x0112


def _encode(image: Image.Image, image_format: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **params)
    return buffer.getvalue()


def _with_alpha(image: Image.Image) -> Image.Image:
    rgba = image.convert("RGBA")
    alpha = np.linspace(0, 255, image.width * image.height).reshape(image.height, image.width)
    rgba.putalpha(Image.fromarray(alpha.astype(np.uint8)))
    return rgba


def _palette_with_transparency() -> bytes:
    palette = gradient_picture(300, 200).quantize(colors=64)
    return _encode(palette, "PNG", transparency=0)


def _sixteen_bit_grey() -> bytes:
    grey = np.asarray(gradient_picture(300, 200).convert("L"), dtype=np.uint16) * 257
    return _encode(Image.fromarray(grey), "PNG")


def _exif_rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = 6
    return _encode(gradient_picture(300, 200), "JPEG", quality=95, exif=exif.tobytes())


PICTURES: dict[str, Callable[[], bytes]] = {
    "1x1 png": lambda: _encode(gradient_picture(1, 1), "PNG"),
    "300x200 png": lambda: _encode(gradient_picture(300, 200), "PNG"),
    "200x300 png": lambda: _encode(gradient_picture(200, 300), "PNG"),
    "10000x20 strip png": lambda: _encode(gradient_picture(10_000, 20), "PNG"),
    "640x480 jpeg": lambda: _encode(gradient_picture(640, 480), "JPEG", quality=90),
    "1800x1200 jpeg": lambda: _encode(gradient_picture(1800, 1200), "JPEG", quality=90),
    "greyscale L png": lambda: _encode(gradient_picture(300, 200).convert("L"), "PNG"),
    "palette with transparency png": _palette_with_transparency,
    "RGBA png": lambda: _encode(_with_alpha(gradient_picture(300, 200)), "PNG"),
    "LA png": lambda: _encode(_with_alpha(gradient_picture(300, 200)).convert("LA"), "PNG"),
    "CMYK jpeg": lambda: _encode(gradient_picture(300, 200).convert("CMYK"), "JPEG", quality=90),
    "16-bit greyscale png": _sixteen_bit_grey,
    "EXIF-rotated jpeg": _exif_rotated_jpeg,
}


@pytest.fixture(scope="module")
def eager_model(random_weights_file) -> torch.nn.Module:
    model = torchvision.models.resnet18(weights=None)
    model.load_state_dict(torch.load(random_weights_file, map_location="cpu", weights_only=True))
    return model.eval()


@pytest.fixture(scope="module", params=BACKENDS)
def classifier(request, prepared_models_dir) -> Classifier:
    """Each backend the service can run must match the eager model."""
    return Classifier(prepared_models_dir, backend=request.param)


def _served_probabilities(classifier: Classifier, image: Image.Image) -> torch.Tensor:
    """Every class's probability, as the service computes it, in class-index order."""
    (result,) = classifier.classify([image], top_k=classifier.identity().num_categories)
    probabilities = torch.zeros(len(result.predictions), dtype=torch.float64)
    for prediction in result.predictions:
        probabilities[prediction.index] = prediction.score
    return probabilities


def _reference_probabilities(model: torch.nn.Module, image: Image.Image) -> torch.Tensor:
    inputs = Preprocessing().reference_transform()(image).unsqueeze(0)
    with torch.no_grad():
        return torch.softmax(model(inputs), dim=1)[0].double()


def test_the_pictures_drive_a_random_model_far_from_uniform(classifier):
    """Guards the tests below: with near-uniform outputs, a 1e-4 tolerance would hide
    a wrong preprocessing step."""
    image = decode_image(PICTURES["300x200 png"]()).image
    resized_differently = image.resize((224, 224))

    served = _served_probabilities(classifier, image)

    assert served.max() > 10 / 1000
    assert (served - _served_probabilities(classifier, resized_differently)).abs().max() > 1e-3


@pytest.mark.parametrize("name", PICTURES)
def test_the_artifact_gives_the_eager_models_probabilities(name, classifier, eager_model):
    image = decode_image(PICTURES[name]()).image

    served = _served_probabilities(classifier, image)
    reference = _reference_probabilities(eager_model, image)

    assert served.sum() == pytest.approx(1.0, abs=1e-4)
    assert (served - reference).abs().max() <= 1e-4


def test_an_exif_rotated_jpeg_is_classified_as_its_upright_pixels(classifier):
    data = _exif_rotated_jpeg()
    stored = Image.open(io.BytesIO(data)).convert("RGB")  # as stored: orientation ignored
    upright = stored.rotate(-90, expand=True)  # orientation 6: turn 90° clockwise to view

    decoded = decode_image(data)

    assert (stored.width, stored.height) == (300, 200)
    assert (decoded.width, decoded.height) == (200, 300)
    assert np.array_equal(np.asarray(decoded.image), np.asarray(upright))
    served = _served_probabilities(classifier, decoded.image)
    assert (served - _served_probabilities(classifier, upright)).abs().max() <= 1e-6
    assert (served - _served_probabilities(classifier, stored)).abs().max() > 1e-3


@pytest.mark.parametrize(
    "name",
    ["1x1 png", "300x200 png", "200x300 png", "10000x20 strip png", "640x480 jpeg", "1800x1200 jpeg"],
)
def test_the_preprocessor_gives_the_reference_transforms_tensor(name):
    image = decode_image(PICTURES[name]()).image
    spec = Preprocessing()

    ours = Preprocessor(spec)(image)
    reference = spec.reference_transform()(image)

    assert ours.shape == reference.shape == (3, 224, 224)
    # Back to 8-bit steps: the fast crop-first resize may round a few pixels the other way.
    std = torch.tensor(spec.std).view(3, 1, 1)
    steps = ((ours - reference) * std * 255).abs()
    assert steps.max() <= 1 + 1e-3
    assert (steps > 0.5).float().mean() <= 0.001
