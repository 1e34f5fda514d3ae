"""PIL image -> normalised tensor, exactly as torchvision's reference transform does it.

Built from torchvision's own functional ops (resize, centre crop) so the result equals
`transforms.Compose([Resize(256), CenterCrop(224), ToTensor(), Normalize(mean, std)])`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocessing:
    resize: int = 256
    crop: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bilinear"

    def as_dict(self) -> dict:
        return {**asdict(self), "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, data: dict) -> Preprocessing:
        return cls(
            resize=int(data["resize"]),
            crop=int(data["crop"]),
            mean=tuple(float(v) for v in data["mean"]),
            std=tuple(float(v) for v in data["std"]),
            interpolation=str(data["interpolation"]),
        )

    def reference_transform(self):
        """The torchvision.transforms pipeline this preprocessing must reproduce."""
        from torchvision import transforms

        return transforms.Compose(
            [
                transforms.Resize(
                    self.resize, interpolation=InterpolationMode(self.interpolation), antialias=True
                ),
                transforms.CenterCrop(self.crop),
                transforms.ToTensor(),
                transforms.Normalize(self.mean, self.std),
            ]
        )


class Preprocessor:
    def __init__(self, spec: Preprocessing):
        self.spec = spec
        self._interpolation = InterpolationMode(spec.interpolation)
        self._mean = torch.tensor(spec.mean).view(3, 1, 1)
        self._std = torch.tensor(spec.std).view(3, 1, 1)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        resized = F.resize(image, self.spec.resize, interpolation=self._interpolation, antialias=True)
        cropped = F.center_crop(resized, self.spec.crop)
        pixels = F.pil_to_tensor(cropped).to(torch.float32).div_(255)
        return pixels.sub_(self._mean).div_(self._std)

    def batch(self, images: Sequence[Image.Image]) -> torch.Tensor:
        return torch.stack([self(image) for image in images])
