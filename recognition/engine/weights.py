"""Obtain model weights and prove they are the ones we expect before loading them."""

from __future__ import annotations

import hashlib
import socket
import urllib.error
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch

from .specs import ModelSpec

DOWNLOAD_TIMEOUT_SECONDS = 20.0


class WeightsError(Exception):
    """The weights cannot be obtained or trusted; the message says what to do."""


class WeightsMismatch(WeightsError):
    pass


class WeightsDownloadFailed(WeightsError):
    pass


@dataclass(frozen=True)
class VerifiedWeights:
    path: Path
    sha256: str
    source: str  # "download", "file", "package" or "custom"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str) -> str:
    actual = sha256_file(path)
    if actual != expected:
        raise WeightsMismatch(
            f"The weights file {path} has SHA-256 {actual}, but the official file has "
            f"SHA-256 {expected}. Refusing to use it: it is a different or damaged file. "
            "To serve your own fine-tuned weights on purpose, pass --custom."
        )
    return actual


def obtain_official(
    spec: ModelSpec,
    *,
    weights_file: Path | None = None,
    progress: bool = False,
    timeout: float = DOWNLOAD_TIMEOUT_SECONDS,
) -> VerifiedWeights:
    """The spec's official weights, from a file the user gives, the package that ships
    them, or torch.hub's download (with its hash check) into the torch cache."""
    expected = spec.weights.sha256
    if weights_file is not None:
        path = Path(weights_file)
        if not path.is_file():
            raise WeightsError(f"The weights file {path} does not exist.")
        return VerifiedWeights(path, verify_sha256(path, expected), "file")
    if spec.weights.packaged_file is not None:
        path = spec.weights.packaged_file()
        return VerifiedWeights(path, verify_sha256(path, expected), "package")
    if spec.weights.url is None:
        raise WeightsError(f"The model {spec.name} has no source of weights.")
    return _download(spec, progress=progress, timeout=timeout)


def _download(spec: ModelSpec, *, progress: bool, timeout: float) -> VerifiedWeights:
    url = spec.weights.url
    filename = Path(urlparse(url).path).name
    cached = Path(torch.hub.get_dir()) / "checkpoints" / filename
    if cached.is_file():
        if sha256_file(cached) == spec.weights.sha256:
            return VerifiedWeights(cached, spec.weights.sha256, "download")
        cached.unlink()  # a damaged earlier download: fetch it again
    cached.parent.mkdir(parents=True, exist_ok=True)
    try:
        with _socket_timeout(timeout):
            # torch.hub writes to a temporary file, checks the hash prefix that torchvision
            # puts in the file name, and only then moves it into place.
            torch.hub.download_url_to_file(
                url, str(cached), hash_prefix=spec.weights.sha256[:8], progress=progress
            )
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise WeightsDownloadFailed(offline_help(spec, url, cached, exc)) from None
    except RuntimeError as exc:  # torch.hub's hash-prefix check
        cached.unlink(missing_ok=True)
        raise WeightsMismatch(f"The download from {url} failed its hash check: {exc}") from None
    try:
        return VerifiedWeights(cached, verify_sha256(cached, spec.weights.sha256), "download")
    except WeightsMismatch:
        cached.unlink(missing_ok=True)
        raise


def offline_help(spec: ModelSpec, url: str, cached: Path, exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or exc
    return (
        f"Could not download the {spec.name} weights from {url} ({reason}). "
        "This machine may have no internet access. On a machine that has it, download "
        f"that file (SHA-256 {spec.weights.sha256}), copy it here and run "
        f"`python manage.py prepare_model --model {spec.name} --weights PATH/{cached.name}`, "
        f"or place it at {cached}. To run without it, "
        "`python manage.py prepare_model --fallback` prepares the offline model instead."
    )


@contextmanager
def _socket_timeout(seconds: float):
    """Bound every connect and read, so a firewalled machine fails instead of hanging."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def load_state_dict(path: Path) -> OrderedDict:
    """Tensors only (weights_only): a weights file must not be able to run code."""
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        # torch's own message runs to several paragraphs and suggests weights_only=False,
        # which would let the file run code: say it in our words, keep torch's as the cause.
        raise WeightsError(
            f"The weights file {path} cannot be read as a PyTorch state dict: it is damaged, "
            "not a PyTorch file, or holds more than tensors. Save the weights with "
            "torch.save(model.state_dict(), PATH) and try again."
        ) from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"The weights file {path} does not hold a state dict of tensors.")
    # Checkpoints saved from DataParallel prefix every key with "module.".
    return OrderedDict((k.removeprefix("module."), v) for k, v in state.items())


def read_labels(path: Path) -> list[str]:
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise WeightsError(f"The labels file {path} cannot be read: {exc}") from None
    labels = [line.strip() for line in lines if line.strip()]
    if not labels:
        raise WeightsError(f"The labels file {path} has no labels (one name per line).")
    return labels
