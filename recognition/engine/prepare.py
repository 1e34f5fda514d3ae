"""Prepare a model for serving: obtain and verify weights, compile, check, store. Which
model is active is the caller's business (prepare_model records it in the database)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import artifact, model_store
from .manifest import Manifest, model_version
from .specs import CUSTOM_ARCHITECTURE, OFFLINE_FALLBACK, ModelSpec, get_spec
from .weights import (
    VerifiedWeights,
    WeightsDownloadFailed,
    WeightsError,
    load_state_dict,
    obtain_official,
    read_labels,
    sha256_file,
)


@dataclass(frozen=True)
class PrepareOutcome:
    manifest: Manifest
    built: bool  # False: an identical build already existed
    fell_back_from: str | None = None

    def summary(self) -> str:
        m = self.manifest
        what = f"{m.name} (version {m.version}, {'custom' if m.custom else 'official'} weights)"
        if not self.built:
            return f"{what} is already prepared in {m.directory}."
        return (
            f"Prepared {what} in {m.directory}: max abs difference to the eager model "
            f"{m.max_abs_diff:.2e} (TorchScript), {m.onnx_max_abs_diff:.2e} (ONNX)."
        )


def prepare(
    models_dir: Path,
    *,
    model: str | None = None,
    weights_file: Path | None = None,
    custom: bool = False,
    labels_file: Path | None = None,
    fallback: bool = False,
    spec: ModelSpec | None = None,
    progress: bool = False,
    fine_tuning: dict | None = None,
    log: Callable[[str], None] = lambda message: None,
) -> PrepareOutcome:
    """`spec` overrides the named model's spec (tests point its URL at a local server).
    Custom weights are a ResNet-18 unless `model` names another architecture;
    `fine_tuning` is what recognition/engine/finetune.py records of how they were made."""
    if custom:
        if weights_file is None:
            raise WeightsError("--custom needs --weights FILE: the fine-tuned network to serve.")
        spec = spec or get_spec(model or CUSTOM_ARCHITECTURE)
        path = Path(weights_file)
        if not path.is_file():
            raise WeightsError(f"The weights file {path} does not exist.")
        weights = VerifiedWeights(path, sha256_file(path), "custom")
        categories = read_labels(labels_file) if labels_file else spec.categories()
        return _build(
            models_dir, spec, weights, categories, custom=True, fine_tuning=fine_tuning, log=log
        )
    if fine_tuning is not None:
        raise WeightsError("A fine-tuning record only goes with custom weights.")

    if labels_file is not None:
        raise WeightsError("--labels only goes with --custom: official models have their own.")
    spec = spec or get_spec(model or CUSTOM_ARCHITECTURE)
    fell_back_from = None
    try:
        weights = obtain_official(spec, weights_file=weights_file, progress=progress)
    except WeightsDownloadFailed as exc:
        if not fallback or spec.name == OFFLINE_FALLBACK:
            raise
        log(str(exc))
        log(f"Falling back to {OFFLINE_FALLBACK}, whose weights ship with this installation.")
        fell_back_from, spec = spec.name, get_spec(OFFLINE_FALLBACK)
        weights = obtain_official(spec)
    outcome = _build(
        models_dir, spec, weights, spec.categories(), custom=False, fine_tuning=None, log=log
    )
    if fell_back_from:
        return PrepareOutcome(outcome.manifest, outcome.built, fell_back_from)
    return outcome


def _build(
    models_dir: Path,
    spec: ModelSpec,
    weights: VerifiedWeights,
    categories: list[str],
    *,
    custom: bool,
    fine_tuning: dict | None,
    log: Callable[[str], None],
) -> PrepareOutcome:
    version = model_version(spec.name, weights.sha256, categories, spec.preprocessing)
    key = f"{spec.name}-{version}"
    existing = model_store.find_prepared(models_dir, key)
    if existing is not None:
        return PrepareOutcome(existing, built=False)

    log(f"Building {spec.name} from {weights.path} (SHA-256 {weights.sha256}) ...")
    module = spec.build(len(categories))
    state = load_state_dict(weights.path)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        hint = " If the head has another number of classes, pass --labels FILE." if custom else ""
        raise WeightsError(
            f"The weights in {weights.path} do not fit {spec.name} with "
            f"{len(categories)} classes.{hint}\n{exc}"
        ) from None
    manifest = artifact.write_prepared(
        models_dir,
        module,
        name=spec.name,
        version=version,
        custom=custom,
        weights_sha256=weights.sha256,
        weights_source=weights.source,
        categories=categories,
        preprocessing=spec.preprocessing,
        fine_tuning=fine_tuning,
    )
    return PrepareOutcome(manifest, built=True)
