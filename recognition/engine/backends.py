"""The runtimes that execute a prepared model: each turns a batch of preprocessed images
into logits, so the classifier above them does not care which one runs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from .artifact import load_for_inference, onnx_session
from .defaults import BACKENDS, DEFAULT_BACKEND, ONNXRUNTIME, TORCHSCRIPT
from .manifest import Manifest
from .weights import sha256_file

Runner = Callable[[torch.Tensor], torch.Tensor]


class BackendError(Exception):
    """The artifact for this backend is missing, altered or unloadable. `str()` is the
    operator's detail; `public` what a client may be told."""

    public = (
        "the prepared model cannot be loaded. An operator should run "
        "`python manage.py prepare_model` to rebuild it."
    )


class BackendMismatch(BackendError):
    """The configured model and backend do not go together."""

    public = (
        "the configured model cannot run on the configured backend. An operator should "
        "check RECOGNITION_MODEL and RECOGNITION_BACKEND."
    )


def artifact_for(manifest: Manifest, backend: str) -> tuple[Path, str | None]:
    if backend == TORCHSCRIPT:
        return manifest.artifact_path, manifest.artifact_sha256
    if backend == ONNXRUNTIME:
        return manifest.onnx_path, manifest.onnx_sha256
    raise BackendMismatch(f"Unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}.")


def load_runner(manifest: Manifest, backend: str, threads: int | None) -> Runner:
    """Verify the backend's artifact against the manifest, then load it."""
    path, expected = artifact_for(manifest, backend)
    fix = "Run `python manage.py prepare_model` to rebuild it."
    if expected is None and manifest.quantization:
        raise BackendMismatch(
            f"The model {manifest.key} ({manifest.quantization}) was prepared without a "
            f"{backend} artifact: quantized versions run on {ONNXRUNTIME} only. Set "
            f"RECOGNITION_BACKEND={ONNXRUNTIME}, or serve {manifest.quantized_from}."
        )
    if expected is None:
        raise BackendError(f"This model was prepared without a {backend} artifact. {fix}")
    if not path.is_file():
        raise BackendError(f"The model artifact {path.name} is missing. {fix}")
    actual = sha256_file(path)
    if actual != expected:
        raise BackendError(
            f"The model artifact {path.name} does not match its manifest "
            f"(SHA-256 {actual}, expected {expected}); "
            f"it may be damaged or tampered with. {fix}"
        )
    try:
        if backend == TORCHSCRIPT:
            return _torchscript_runner(path, threads)
        return _onnx_runner(path, threads)
    except Exception as exc:  # each runtime has its own error types for a bad file
        raise BackendError(f"The model artifact {path.name} cannot be loaded ({exc}). {fix}")


def _torchscript_runner(path: Path, threads: int | None) -> Runner:
    if threads:
        torch.set_num_threads(threads)
    module = load_for_inference(path)

    def run(batch: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return module(batch)

    return run


def _onnx_runner(path: Path, threads: int | None) -> Runner:
    session = onnx_session(path, threads)

    def run(batch: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {"input": batch.numpy()})[0])

    return run
