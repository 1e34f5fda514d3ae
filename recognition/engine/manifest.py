"""What a prepared model is: its manifest (names, hashes, categories, how to feed it),
read and written as manifest.json beside the artifacts, and the error for a model that
cannot be found or trusted."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from .preprocess import Preprocessing

ARTIFACT_NAME = "model.ts"
ONNX_NAME = "model.onnx"
MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1
# Quantized versions sit next to their fp32 source, as <name>-<fp32 version>-int8.
QUANTIZED_SUFFIX = "-int8"


class ArtifactError(Exception):
    """The artifact cannot be built, trusted or found. `str()` is the operator's detail
    (it may name files); `public` is what a client of the service may be told."""

    public = (
        "the prepared model is damaged or incomplete. An operator should run "
        "`python manage.py prepare_model` to rebuild it."
    )


class ModelNotPrepared(ArtifactError):
    public = (
        "no model is prepared on this server. An operator should run "
        "`python manage.py prepare_model`."
    )


@dataclass(frozen=True)
class Manifest:
    name: str
    version: str
    custom: bool
    weights_sha256: str
    weights_source: str
    artifact_sha256: str | None  # None: no TorchScript artifact (quantized versions)
    torch_version: str
    torchvision_version: str
    categories: list[str]
    preprocessing: Preprocessing
    created_at: str
    max_abs_diff: float | None  # TorchScript vs eager; None without TorchScript
    directory: Path = field(compare=False)
    # Builds from before the ONNX export have none; prepare_model rebuilds them.
    onnx_sha256: str | None = None
    # fp32: ONNX vs the eager model on random inputs. int8: vs the fp32 ONNX model on
    # quantize.py's check pictures.
    onnx_max_abs_diff: float | None = None
    # Set for quantized versions only (recognition/engine/quantize.py); older manifests
    # have none of these.
    quantization: str | None = None  # e.g. "int8-static-qdq"
    quantized_from: str | None = None  # the key of the fp32 version
    top1_agreement: float | None = None  # share of check pictures with fp32's top-1 label
    # Set for versions made by `manage.py finetune` only: the base version's key, the
    # training set's hash, its size, the new categories and the accuracies measured.
    fine_tuning: dict | None = None

    @property
    def key(self) -> str:
        return f"{self.name}-{self.version}"

    @property
    def artifact_path(self) -> Path:
        return self.directory / ARTIFACT_NAME

    @property
    def onnx_path(self) -> Path:
        return self.directory / ONNX_NAME

    def as_dict(self) -> dict:
        return {
            "format": MANIFEST_FORMAT,
            "name": self.name,
            "version": self.version,
            "custom": self.custom,
            "weights_sha256": self.weights_sha256,
            "weights_source": self.weights_source,
            "artifact": ARTIFACT_NAME if self.artifact_sha256 else None,
            "artifact_sha256": self.artifact_sha256,
            "torch_version": self.torch_version,
            "torchvision_version": self.torchvision_version,
            "categories": self.categories,
            "preprocessing": self.preprocessing.as_dict(),
            "created_at": self.created_at,
            "max_abs_diff": self.max_abs_diff,
            "onnx": ONNX_NAME,
            "onnx_sha256": self.onnx_sha256,
            "onnx_max_abs_diff": self.onnx_max_abs_diff,
            "quantization": self.quantization,
            "quantized_from": self.quantized_from,
            "top1_agreement": self.top1_agreement,
            "fine_tuning": self.fine_tuning,
        }

    @classmethod
    def read(cls, directory: Path) -> Manifest:
        path = directory / MANIFEST_NAME
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(
                name=data["name"],
                version=data["version"],
                custom=bool(data["custom"]),
                weights_sha256=data["weights_sha256"],
                weights_source=data["weights_source"],
                artifact_sha256=data["artifact_sha256"],
                torch_version=data["torch_version"],
                torchvision_version=data["torchvision_version"],
                categories=list(data["categories"]),
                preprocessing=Preprocessing.from_dict(data["preprocessing"]),
                created_at=data["created_at"],
                max_abs_diff=_optional_float(data["max_abs_diff"]),
                directory=directory,
                onnx_sha256=data.get("onnx_sha256"),
                onnx_max_abs_diff=_optional_float(data.get("onnx_max_abs_diff")),
                quantization=data.get("quantization"),
                quantized_from=data.get("quantized_from"),
                top1_agreement=_optional_float(data.get("top1_agreement")),
                fine_tuning=data.get("fine_tuning"),
            )
        except FileNotFoundError:
            raise ArtifactError(
                f"The model manifest {path} is missing. "
                "Run `python manage.py prepare_model` to prepare a model."
            ) from None
        except (ValueError, KeyError, TypeError) as exc:
            raise ArtifactError(
                f"The model manifest {path} is unreadable ({exc}). "
                "Run `python manage.py prepare_model` to rebuild it."
            ) from None

    def write_to(self, directory: Path) -> None:
        """Write the manifest into a staging directory (see install())."""
        text = json.dumps(self.as_dict(), indent=2) + "\n"
        (directory / MANIFEST_NAME).write_text(text, encoding="utf-8")


def _optional_float(value) -> float | None:
    return None if value is None else float(value)


def model_version(
    name: str, weights_sha256: str, categories: list[str], preprocessing: Preprocessing
) -> str:
    """Identifies what decides the predictions: architecture, weights, labels, input."""
    identity = json.dumps(
        [name, weights_sha256, categories, preprocessing.as_dict()], sort_keys=True
    ).encode()
    return hashlib.sha256(identity).hexdigest()[:12]
