"""PIL image -> normalised tensor, as torchvision's reference transform makes it.

The result equals `transforms.Compose([Resize(256), CenterCrop(224), ToTensor(),
Normalize(mean, std)])` to within one 8-bit step on a few pixels (see `_resized_crop`).
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


_PIL_FILTERS = {
    InterpolationMode.NEAREST: Image.Resampling.NEAREST,
    InterpolationMode.BILINEAR: Image.Resampling.BILINEAR,
    InterpolationMode.BICUBIC: Image.Resampling.BICUBIC,
    InterpolationMode.LANCZOS: Image.Resampling.LANCZOS,
}


class Preprocessor:
    def __init__(self, spec: Preprocessing):
        self.spec = spec
        self._interpolation = InterpolationMode(spec.interpolation)
        self._mean = torch.tensor(spec.mean).view(3, 1, 1)
        self._std = torch.tensor(spec.std).view(3, 1, 1)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        pixels = F.pil_to_tensor(self._resized_crop(image)).to(torch.float32).div_(255)
        return pixels.sub_(self._mean).div_(self._std)

    def _resized_crop(self, image: Image.Image) -> Image.Image:
        """Resize-then-centre-crop, computed for the cropped pixels only.

        Pillow resamples just the source box that the crop would keep (its filter still
        reads the pixels around the box), so this takes about half the time of resizing
        the whole picture. It matches the reference transform to within one 8-bit step
        on a few pixels in ten thousand, from rounding in the filter coefficients.
        """
        width, height = image.size
        resize, crop = self.spec.resize, self.spec.crop
        # torchvision's Resize(int): the shorter side becomes `resize`, the other truncates.
        if width <= height:
            new_width, new_height = resize, int(resize * height / width)
        else:
            new_width, new_height = int(resize * width / height), resize
        # Enlarging (a small picture, cheap anyway) rounds differently on many pixels;
        # a crop larger than the picture is padded. Both go the reference way.
        if new_width > width or new_width < crop or new_height < crop:
            resized = F.resize(image, resize, interpolation=self._interpolation, antialias=True)
            return F.center_crop(resized, crop)
        # torchvision's CenterCrop offsets, mapped back to source coordinates.
        top = int(round((new_height - crop) / 2.0))
        left = int(round((new_width - crop) / 2.0))
        x_scale, y_scale = width / new_width, height / new_height
        box = (left * x_scale, top * y_scale, (left + crop) * x_scale, (top + crop) * y_scale)
        return image.resize((crop, crop), _PIL_FILTERS[self._interpolation], box=box)

    def batch(self, images: Sequence[Image.Image]) -> torch.Tensor:
        return torch.stack([self(image) for image in images])
