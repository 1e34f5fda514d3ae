"""The models directory on disk: prepared builds, each in its own folder.

Layout:
    <models>/<name>-<version>/model.ts        the frozen TorchScript module
    <models>/<name>-<version>/model.onnx      the same network for ONNX Runtime
    <models>/<name>-<version>/manifest.json   what it is, its hashes, how to feed it
    <models>/<name>-<version>-int8/           optional: an int8 copy of model.onnx, no model.ts
Every build appears whole or not at all: it is assembled under a temporary name and
renamed into place. Which build is active is not kept here: the caller names it (the
Django side keeps it as a database row, recognition/active_model.py). On a node that
fetched its models from the object store this directory is a cache and may hold only
the artifact its backend needs.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import torch

from .manifest import MANIFEST_NAME, QUANTIZED_SUFFIX, ArtifactError, Manifest, ModelNotPrepared
from .weights import sha256_file


def resolve(models_dir: Path, model: str | None = None) -> Manifest:
    """The manifest of `model`: a key like "resnet18-1a2b3c4d5e6f", or a model name. A bare
    name means the newest fp32 build; "<name>-int8" the newest int8 one: a quantized
    version is never picked by accident. None means the only fp32 build prepared here,
    so a single-model install needs no activation step."""
    models_dir = Path(models_dir)
    if model is None:
        key = sole_build(models_dir)
        if key is None:
            keys = prepared_keys(models_dir)
            if not keys:
                raise ModelNotPrepared(
                    f"No model is prepared in {models_dir}. Run `python manage.py prepare_model`."
                )
            raise ModelNotPrepared(
                f"No model is active and {models_dir} holds several ({', '.join(keys)}). "
                "Run `python manage.py activate_model KEY` with one of them."
            )
        return Manifest.read(models_dir / key)
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
            f"Run `python manage.py prepare_model --model {model}`, or activate a prepared one."
        )
    return Manifest.read(candidates[-1].parent)


def prepared_keys(models_dir: Path) -> list[str]:
    """The keys of the builds in this directory (whole ones: staging folders start with a dot)."""
    models_dir = Path(models_dir)
    if not models_dir.is_dir():
        return []
    return sorted(
        path.parent.name
        for path in models_dir.glob(f"*/{MANIFEST_NAME}")
        if not path.parent.name.startswith(".")
    )


def sole_build(models_dir: Path) -> str | None:
    """The key of the only fp32 build here, or None when there is none or several."""
    fp32 = [key for key in prepared_keys(models_dir) if not key.endswith(QUANTIZED_SUFFIX)]
    return fp32[0] if len(fp32) == 1 else None


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


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
