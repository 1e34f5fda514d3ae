"""Build, check and store the TorchScript artifact and its manifest.

Layout of the models directory:
    <models>/<name>-<version>/model.ts        the frozen TorchScript module
    <models>/<name>-<version>/model.onnx      the same network for ONNX Runtime
    <models>/<name>-<version>/manifest.json   what it is, its hashes, how to feed it
    <models>/active.json                      {"key": "<name>-<version>"}
    <models>/<name>-<version>-int8/           optional: an int8 copy of model.onnx, no model.ts
Every file appears whole or not at all: directories are assembled under a temporary
name and renamed into place; the pointer is replaced with os.replace().
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch
import torchvision
from torch import nn

from .preprocess import Preprocessing
from .weights import sha256_file

# TorchScript is what we ship (a single self-contained file, loadable without Python
# model code); torch 2.14 warns on every use that it is deprecated.
warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated", category=FutureWarning)

ACTIVE_POINTER = "active.json"
ARTIFACT_NAME = "model.ts"
ONNX_NAME = "model.onnx"
MANIFEST_NAME = "manifest.json"
MAX_ABS_DIFF = 1e-4
MANIFEST_FORMAT = 1
# Quantized versions sit next to their fp32 source, as <name>-<fp32 version>-int8.
QUANTIZED_SUFFIX = "-int8"

__all__ = ["sha256_file"]


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


def load_active_manifest(models_dir: Path, model: str | None = None) -> Manifest:
    """The manifest of `model` (a key like "resnet18-1a2b3c4d5e6f", or a model name), or
    of the model prepare_model made active last. A bare name means the newest fp32 build;
    "<name>-int8" the newest int8 one: a quantized version is never picked by accident."""
    models_dir = Path(models_dir)
    if model:
        if (models_dir / model / MANIFEST_NAME).is_file():
            return Manifest.read(models_dir / model)
        quantized = model.endswith(QUANTIZED_SUFFIX)
        name = model.removesuffix(QUANTIZED_SUFFIX)
        candidates = sorted(
            (
                path
                for path in models_dir.glob(f"{name}-*/{MANIFEST_NAME}")
                if path.parent.name.endswith(QUANTIZED_SUFFIX) == quantized
            ),
            key=os.path.getmtime,
        )
        if not candidates:
            raise ModelNotPrepared(
                f"The model {model!r} is not prepared in {models_dir}. "
                f"Run `python manage.py prepare_model --model {model}`."
            )
        return Manifest.read(candidates[-1].parent)
    pointer = models_dir / ACTIVE_POINTER
    try:
        key = json.loads(pointer.read_text(encoding="utf-8"))["key"]
    except FileNotFoundError:
        raise ModelNotPrepared(
            f"No model is prepared in {models_dir}. Run `python manage.py prepare_model`."
        ) from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ArtifactError(
            f"The active-model pointer {pointer} is unreadable ({exc}). "
            "Run `python manage.py prepare_model`."
        ) from None
    return Manifest.read(models_dir / key)


def find_prepared(models_dir: Path, key: str) -> Manifest | None:
    """An existing, intact build for this key and this torch, or None."""
    directory = Path(models_dir) / key
    try:
        manifest = Manifest.read(directory)
    except ArtifactError:
        return None
    if manifest.torch_version != torch.__version__:
        return None
    if manifest.quantization is None and not _intact(
        manifest.artifact_path, manifest.artifact_sha256
    ):
        return None
    if not _intact(manifest.onnx_path, manifest.onnx_sha256):
        return None
    return manifest


def _intact(path: Path, expected: str | None) -> bool:
    return expected is not None and path.is_file() and sha256_file(path) == expected


def activate(models_dir: Path, key: str) -> None:
    _atomic_write_text(Path(models_dir) / ACTIVE_POINTER, json.dumps({"key": key}) + "\n")


def active_key(models_dir: Path) -> str | None:
    try:
        return json.loads((Path(models_dir) / ACTIVE_POINTER).read_text())["key"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def compile_module(model: nn.Module, crop: int) -> torch.jit.ScriptModule:
    """Trace and freeze (weights become constants, dead code goes)."""
    example = torch.randn(1, 3, crop, crop, generator=torch.Generator().manual_seed(0))
    # Not under no_grad: a module frozen there saves but fails to load again (torch 2.14).
    with torch.inference_mode(False):
        return torch.jit.freeze(torch.jit.trace(model.eval(), example))


def load_for_inference(path: Path) -> torch.jit.ScriptModule:
    """Load an artifact and optimise it for CPU inference (conv/bn folding, MKLDNN
    prepacking). The optimised graph cannot be saved and loaded back in torch 2.14
    ("required keyword attribute 'value' is undefined"), so this pass runs at load."""
    module = torch.jit.load(str(path), map_location="cpu")
    with torch.inference_mode(False):
        return torch.jit.optimize_for_inference(module.eval())


def export_onnx(model: nn.Module, path: Path, crop: int) -> None:
    """The same network as ONNX with a dynamic batch axis, for ONNX Runtime."""
    example = torch.randn(1, 3, crop, crop, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        # Padding slices that cannot be folded stay as ops: correct, only slower to say so.
        warnings.filterwarnings("ignore", message="Constant folding", category=UserWarning)
        # We choose the TorchScript-based exporter on purpose (see below); no need to nag.
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        # The TorchScript-based exporter: the dynamo one needs onnxscript and takes 5x longer.
        torch.onnx.export(
            model.eval(),
            (example,),
            str(path),
            dynamo=False,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=17,
        )


def onnx_session(path: Path, threads: int | None = None):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads or 0  # 0: one per core
    options.inter_op_num_threads = 1
    # Idle pool threads would otherwise spin for work, taking the CPU that the request
    # threads of the same process need for decoding and storage (bench/http.py).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(
        str(path), sess_options=options, providers=["CPUExecutionProvider"]
    )


def max_abs_diff(model: nn.Module, artifact_path: Path, crop: int) -> float:
    """How far the artifact, as the service will load it, is from the eager model, on
    fixed inputs, at batch sizes other than the traced one (the batch axis is dynamic)."""
    if artifact_path.suffix == ".onnx":
        session = onnx_session(artifact_path)

        def loaded(inputs: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(session.run(None, {"input": inputs.numpy()})[0])

    else:
        loaded = load_for_inference(artifact_path)
    generator = torch.Generator().manual_seed(1)
    worst = 0.0
    with torch.no_grad():
        for batch in (1, 3):
            inputs = torch.randn(batch, 3, crop, crop, generator=generator)
            expected, actual = model.eval()(inputs), loaded(inputs)
            if actual.shape != expected.shape:
                raise ArtifactError(
                    f"The compiled model gives outputs of shape {tuple(actual.shape)}, "
                    f"the eager model {tuple(expected.shape)}."
                )
            worst = max(worst, float((actual - expected).abs().max()))
    return worst


def write_prepared(
    models_dir: Path,
    model: nn.Module,
    *,
    name: str,
    version: str,
    custom: bool,
    weights_sha256: str,
    weights_source: str,
    categories: list[str],
    preprocessing: Preprocessing,
) -> Manifest:
    """Compile, check and write artifact + manifest under a temporary name, then rename
    into place. Nothing is left behind when the check fails."""
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    key = f"{name}-{version}"
    staging = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=models_dir))
    try:
        artifact_path = staging / ARTIFACT_NAME
        torch.jit.save(compile_module(model, preprocessing.crop), str(artifact_path))
        onnx_path = staging / ONNX_NAME
        export_onnx(model, onnx_path, preprocessing.crop)
        diffs = {}
        for path in (artifact_path, onnx_path):
            diffs[path] = max_abs_diff(model, path, preprocessing.crop)
            if not diffs[path] <= MAX_ABS_DIFF:
                raise ArtifactError(
                    f"The compiled model {path.name} differs from the eager model by "
                    f"{diffs[path]:.3g} (more than {MAX_ABS_DIFF:g}); refusing to write it."
                )
        manifest = Manifest(
            name=name,
            version=version,
            custom=custom,
            weights_sha256=weights_sha256,
            weights_source=weights_source,
            artifact_sha256=sha256_file(artifact_path),
            torch_version=torch.__version__,
            torchvision_version=torchvision.__version__,
            categories=list(categories),
            preprocessing=preprocessing,
            created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            max_abs_diff=diffs[artifact_path],
            directory=models_dir / key,
            onnx_sha256=sha256_file(onnx_path),
            onnx_max_abs_diff=diffs[onnx_path],
        )
        manifest.write_to(staging)
        install(staging, models_dir / key)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def install(staging: Path, final: Path) -> None:
    """Rename a fully written staging directory (made with tempfile.mkdtemp in the models
    directory) into place as `final`, in one step for readers."""
    for path in staging.iterdir():
        _fsync(path)
    staging.chmod(0o755)
    if final.exists():
        # A stale build (older torch, damaged file): swap it out in two renames.
        retired = Path(tempfile.mkdtemp(prefix=f".{final.name}.old.", dir=final.parent))
        os.replace(final, retired / "build")
        os.replace(staging, final)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.replace(staging, final)
    _fsync(final.parent)


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
