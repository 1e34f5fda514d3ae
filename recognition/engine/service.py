"""The process-wide classifier: loads the active TorchScript artifact once, verifies it,
and turns batches of images into top-k labels."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from .artifact import (
    ACTIVE_POINTER,
    ArtifactError,
    Manifest,
    load_active_manifest,
    load_for_inference,
    sha256_file,
)
from .preprocess import Preprocessor


class ModelUnavailable(Exception):
    """No usable model: missing, unverifiable or unloadable. The message says the fix."""


@dataclass(frozen=True)
class Prediction:
    label: str
    index: int
    score: float  # softmax probability


@dataclass(frozen=True)
class ModelIdentity:
    name: str
    version: str
    custom: bool
    num_categories: int


@dataclass(frozen=True)
class Classification:
    predictions: tuple[Prediction, ...]
    model: ModelIdentity
    inference_ms: float  # this image's share of the batch's preprocessing + forward pass


@dataclass
class _Loaded:
    manifest: Manifest
    identity: ModelIdentity
    module: torch.jit.ScriptModule
    preprocessor: Preprocessor
    categories: tuple[str, ...]
    signature: tuple


class Classifier:
    """Thread-safe; loads lazily and reloads when prepare_model makes another model active
    or an artifact comes back after going missing, without a process restart."""

    def __init__(self, models_dir: Path, *, model: str | None = None, threads: int | None = None):
        self.models_dir = Path(models_dir)
        self.model = model
        self.threads = threads
        self._lock = threading.Lock()
        self._loaded: _Loaded | None = None

    def identity(self) -> ModelIdentity:
        return self._current().identity

    def manifest(self) -> Manifest:
        return self._current().manifest

    def is_ready(self) -> bool:
        try:
            self._current()
        except ModelUnavailable:
            return False
        return True

    def warm_up(self) -> None:
        """One forward pass, so the first user request does not pay for lazy init."""
        loaded = self._current()
        blank = Image.new("RGB", (loaded.preprocessor.spec.crop,) * 2, (127, 127, 127))
        self.classify([blank], top_k=1)

    def classify(self, images: Sequence[Image.Image], top_k: int = 3) -> list[Classification]:
        if not images:
            return []
        loaded = self._current()
        k = max(1, min(int(top_k), len(loaded.categories)))
        started = time.perf_counter()
        batch = loaded.preprocessor.batch(images)
        with torch.inference_mode():
            probabilities = torch.softmax(loaded.module(batch), dim=1)
            scores, indices = probabilities.topk(k, dim=1)
        per_image_ms = (time.perf_counter() - started) * 1000 / len(images)
        return [
            Classification(
                predictions=tuple(
                    Prediction(label=loaded.categories[i], index=i, score=float(s))
                    for s, i in zip(row_scores.tolist(), row_indices.tolist())
                ),
                model=loaded.identity,
                inference_ms=per_image_ms,
            )
            for row_scores, row_indices in zip(scores, indices)
        ]

    def _current(self) -> _Loaded:
        loaded = self._loaded
        if loaded is not None and loaded.signature == self._signature(loaded.manifest):
            return loaded
        with self._lock:
            loaded = self._loaded
            if loaded is None or loaded.signature != self._signature(loaded.manifest):
                self._loaded = None
                self._loaded = self._load()
            return self._loaded

    def _signature(self, manifest: Manifest) -> tuple:
        """Cheap stat()s that change whenever the active model or its artifact changes."""
        return (_stat_key(self.models_dir / ACTIVE_POINTER), _stat_key(manifest.artifact_path))

    def _load(self) -> _Loaded:
        try:
            manifest = load_active_manifest(self.models_dir, self.model)
        except ArtifactError as exc:
            raise ModelUnavailable(str(exc)) from None
        path = manifest.artifact_path
        fix = "Run `python manage.py prepare_model` to rebuild it."
        if not path.is_file():
            raise ModelUnavailable(f"The model artifact {path.name} is missing. {fix}")
        actual = sha256_file(path)
        if actual != manifest.artifact_sha256:
            raise ModelUnavailable(
                f"The model artifact {path.name} does not match its manifest "
                f"(SHA-256 {actual}, expected {manifest.artifact_sha256}); "
                f"it may be damaged or tampered with. {fix}"
            )
        if self.threads:
            torch.set_num_threads(self.threads)
        try:
            module = load_for_inference(path)
        except (RuntimeError, OSError, ValueError) as exc:
            raise ModelUnavailable(f"The model artifact {path.name} cannot be loaded ({exc}). {fix}")
        identity = ModelIdentity(
            name=manifest.name,
            version=manifest.version,
            custom=manifest.custom,
            num_categories=len(manifest.categories),
        )
        return _Loaded(
            manifest=manifest,
            identity=identity,
            module=module,
            preprocessor=Preprocessor(manifest.preprocessing),
            categories=tuple(manifest.categories),
            signature=self._signature(manifest),
        )


def _stat_key(path: Path) -> tuple:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return (str(path), None)
    return (str(path), stat.st_mtime_ns, stat.st_size, stat.st_ino)
