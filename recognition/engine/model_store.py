"""The models directory on disk: prepared builds, each in its own folder, and the pointer
to the active one.

Layout:
    <models>/<name>-<version>/model.ts        the frozen TorchScript module
    <models>/<name>-<version>/model.onnx      the same network for ONNX Runtime
    <models>/<name>-<version>/manifest.json   what it is, its hashes, how to feed it
    <models>/active.json                      {"key": "<name>-<version>"}
    <models>/<name>-<version>-int8/           optional: an int8 copy of model.onnx, no model.ts
Every file appears whole or not at all: directories are assembled under a temporary
name and renamed into place; the pointer is replaced with os.replace().
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from .manifest import MANIFEST_NAME, QUANTIZED_SUFFIX, ArtifactError, Manifest, ModelNotPrepared
from .weights import sha256_file

ACTIVE_POINTER = "active.json"


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
