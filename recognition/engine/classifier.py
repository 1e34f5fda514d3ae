"""The process-wide classifier: loads the active model once, verifies it, and turns
batches of images into top-k labels."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from .backends import BackendError, Runner, artifact_for, load_runner
from .defaults import DEFAULT_BACKEND, DEFAULT_TOP_K
from .manifest import ArtifactError, Manifest
from .model_store import resolve
from .preprocess import Preprocessor

logger = logging.getLogger(__name__)


# Draft-mode decoding (opt-in) keeps a JPEG's shorter side at least this many times the
# model's resize side, so the final resize still averages several source pixels into one.
DRAFT_MARGIN = 2

# However unchanged the files look, a failed load is tried again after this long.
RETRY_FAILED_LOAD_SECONDS = 5.0


class ModelUnavailable(Exception):
    """No usable model: missing, unverifiable or unloadable.

    `str()` is the operator's detail (it may name files on the server) for logs and
    commands; `message` is what a client may be told: what is wrong and the fix."""

    status = 503
    code = "model_unavailable"

    def __init__(self, detail: str, public: str = ArtifactError.public):
        super().__init__(detail)
        self.public = public
        self.message = f"Image recognition is unavailable: {public}"


@dataclass(frozen=True)
class _Failure:
    probe: tuple
    at: float
    error: ModelUnavailable


@dataclass(frozen=True)
class ScoredLabel:
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
class Recognition:
    predictions: tuple[ScoredLabel, ...]
    model: ModelIdentity
    inference_ms: float  # this image's preprocessing plus its share of the forward pass


@dataclass(frozen=True)
class LoadedModel:
    manifest: Manifest
    identity: ModelIdentity
    forward: Runner  # preprocessed batch -> logits
    preprocessor: Preprocessor
    categories: tuple[str, ...]
    signature: tuple

    def top_k(self, logits: torch.Tensor, top_k: int) -> list[tuple[ScoredLabel, ...]]:
        k = max(1, min(int(top_k), len(self.categories)))
        scores, indices = torch.softmax(logits, dim=1).topk(k, dim=1)
        return [
            tuple(
                ScoredLabel(label=self.categories[i], index=i, score=s)
                for s, i in zip(row_scores, row_indices)
            )
            for row_scores, row_indices in zip(scores.tolist(), indices.tolist())
        ]


class Classifier:
    """Thread-safe; loads `model` (a key or a name; None: the only build prepared) lazily,
    reloads when its artifact changes or comes back after going missing, and switches to
    another model with select(), without a process restart."""

    def __init__(
        self,
        models_dir: Path,
        *,
        model: str | None = None,
        threads: int | None = None,
        backend: str = DEFAULT_BACKEND,
    ):
        self.models_dir = Path(models_dir)
        self.model = model
        self.threads = threads
        self.backend = backend
        self._lock = threading.Lock()
        self._loaded: LoadedModel | None = None
        self._failure: _Failure | None = None
        self._attempted: Path | None = None  # the artifact the last load tried
        self._served_key: str | None = None

    def identity(self) -> ModelIdentity:
        return self.current().identity

    def loaded_key(self) -> str | None:
        """The key of the model serving now, or None before the first successful load."""
        loaded = self._loaded
        return loaded.manifest.key if loaded is not None else None

    def select(self, model: str) -> LoadedModel:
        """Load `model` and serve it from now on. When it cannot be loaded, raise
        ModelUnavailable and go on serving the model loaded before, if any: requests
        never wait for, or fail because of, a switch that does not work out."""
        with self._lock:
            loaded = self._loaded
            if loaded is not None and loaded.manifest.key == model and self.model == model:
                return loaded
            candidate = self._load(model)
            self.model = model
            self._failure = None
            self._install_loaded(candidate)
            return candidate

    def manifest(self) -> Manifest:
        return self.current().manifest

    def decode_side(self) -> int:
        """How large a picture must be decoded for this model: its shorter side at least
        DRAFT_MARGIN × the side preprocessing resizes it to. Finer is wasted work."""
        return DRAFT_MARGIN * self.current().preprocessor.spec.resize

    def is_ready(self) -> bool:
        try:
            self.current()
        except ModelUnavailable:
            return False
        return True

    def shedding(self) -> bool:
        """Whether it has lately answered requests "overloaded" (only a batching
        classifier, which has a bounded queue, ever does)."""
        return False

    def warm_up(self) -> None:
        """One forward pass, so the first user request does not pay for lazy init."""
        crop = self.current().preprocessor.spec.crop
        self.classify([Image.new("RGB", (crop, crop), (127, 127, 127))], top_k=1)

    def classify(
        self, images: Sequence[Image.Image], top_k: int = DEFAULT_TOP_K
    ) -> list[Recognition]:
        if not images:
            return []
        loaded = self.current()
        started = time.perf_counter()
        logits = loaded.forward(loaded.preprocessor.batch(images))
        rows = loaded.top_k(logits, top_k)
        per_image_ms = (time.perf_counter() - started) * 1000 / len(images)
        return [Recognition(row, loaded.identity, per_image_ms) for row in rows]

    def close(self) -> None:
        """Nothing to release here; the batching classifier drains its queue."""

    def current(self) -> LoadedModel:
        loaded = self._loaded
        if loaded is not None and loaded.signature == self._signature(loaded.manifest, self.model):
            return loaded
        with self._lock:
            loaded = self._loaded
            if loaded is None or loaded.signature != self._signature(loaded.manifest, self.model):
                self._loaded = None
                self._install_loaded(self._load_unless_known_broken())
            return self._loaded

    def _install_loaded(self, loaded: LoadedModel) -> None:
        if self._served_key != loaded.manifest.key:
            # Cluster operators (and tests/cluster) look for this line in each node's log.
            logger.info("Serving model %s", loaded.manifest.key)
            self._served_key = loaded.manifest.key
        self._loaded = loaded

    def _load_unless_known_broken(self) -> LoadedModel:
        """A failed load is not retried (re-reading and hashing the artifact) on every
        request or public health probe: only once the files change, or after a while."""
        failure = self._failure
        if (
            failure is not None
            and failure.probe == self._probe()
            and time.monotonic() - failure.at < RETRY_FAILED_LOAD_SECONDS
        ):
            raise ModelUnavailable(str(failure.error), failure.error.public)
        try:
            loaded = self._load(self.model)
        except ModelUnavailable as exc:
            self._failure = _Failure(self._probe(), time.monotonic(), exc)
            raise
        self._failure = None
        return loaded

    def _probe(self) -> tuple:
        """What a fix changes: the model asked for, the folder, the artifact last tried."""
        return (
            self.model,
            _stat_key(self.models_dir),
            _stat_key(self._attempted) if self._attempted else None,
        )

    def _signature(self, manifest: Manifest, model: str | None) -> tuple:
        """Cheap stat()s that change whenever the model asked for or its artifact changes."""
        path, _ = artifact_for(manifest, self.backend)
        return (model, _stat_key(path))

    def _load(self, model: str | None) -> LoadedModel:
        try:
            manifest = resolve(self.models_dir, model)
            self._attempted = artifact_for(manifest, self.backend)[0]
            forward = load_runner(manifest, self.backend, self.threads)
        except (ArtifactError, BackendError) as exc:
            raise ModelUnavailable(str(exc), exc.public) from None
        identity = ModelIdentity(
            name=manifest.name,
            version=manifest.version,
            custom=manifest.custom,
            num_categories=len(manifest.categories),
        )
        return LoadedModel(
            manifest=manifest,
            identity=identity,
            forward=forward,
            preprocessor=Preprocessor(manifest.preprocessing),
            categories=tuple(manifest.categories),
            signature=self._signature(manifest, model),
        )


def _stat_key(path: Path) -> tuple:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return (str(path), None)
    return (str(path), stat.st_mtime_ns, stat.st_size, stat.st_ino)
