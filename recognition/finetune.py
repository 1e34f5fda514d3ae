"""Learning from corrections: a new model version whose head is trained on the stored
pictures, with accepted corrections as labels, written through the prepare pipeline.

The training set (recognition/training_set.py) is every picture with an accepted
correction, labelled with it (a label that is not one of the base model's categories
becomes a new category, appended after them in label order), plus anchors that keep
the known categories from being forgotten.

The base is the active model unless named. A fine-tuned version as the base means its
own base: every accepted correction is in each training set, so training again from
the official weights loses nothing. The command (manage.py finetune) runs it here; the
admin queues it as a job (JobKind.FINETUNE) for a worker.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from PIL import Image

from . import active_model, jobs, published_models, reclassify, storage
from .engine import finetune as engine
from .engine.manifest import ArtifactError, Manifest
from .engine.prepare import prepare
from .engine.preprocess import Preprocessor
from .engine.specs import get_spec
from .engine.weights import WeightsError, obtain_official
from .errors import ServiceError
from .models import Job, JobKind
from .training_set import ANCHOR_MIN_SCORE, Picture, training_set, training_set_sha256

logger = logging.getLogger(__name__)


class FinetuneRefused(ServiceError):
    """Fine-tuning cannot start or its result may not be activated; one paragraph."""

    code = "finetune_refused"


@dataclass(frozen=True)
class Outcome:
    key: str
    base: str
    train_images: int
    new_categories: list[str]
    cv_accuracy_before: float
    cv_accuracy_after: float
    known_accuracy_before: float | None
    known_accuracy_after: float | None
    folds: int
    training_set_sha256: str
    built: bool
    activated: bool = False
    reclassification_job: int | None = None

    def as_json(self) -> dict:
        """What `manage.py finetune --json` prints: these keys exactly."""
        fields = ("key", "base", "train_images", "new_categories", "cv_accuracy_before", "cv_accuracy_after")
        return {name: getattr(self, name) for name in fields}

    def summary(self) -> str:
        known = (
            f"; known categories {self.known_accuracy_before:.0%} → {self.known_accuracy_after:.0%}"
            if self.known_accuracy_after is not None
            else ""
        )
        new = ", ".join(self.new_categories) or "none"
        what = "Wrote" if self.built else "Already prepared:"
        return (
            f"{what} {self.key}, fine-tuned from {self.base} on {self.train_images} pictures "
            f"(new categories: {new}). {self.folds}-fold cross-validated accuracy on the "
            f"corrected pictures {self.cv_accuracy_before:.0%} → {self.cv_accuracy_after:.0%}{known}."
        )


def base_manifest(key: str | None = None) -> Manifest:
    """The manifest of the model to fine-tune: `key`, or the active model; a fine-tuned
    version's own base, an int8 version's fp32 model."""
    key = key or active_model.active_key()
    if not key:
        raise FinetuneRefused(
            "No model is active, so there is no base to fine-tune. Name one with "
            "`--base KEY`, or prepare one with `python manage.py prepare_model`."
        )
    try:
        manifest = active_model.prepared_manifest(key)
        if manifest.fine_tuning:
            return base_manifest(manifest.fine_tuning["base"])
        if manifest.quantized_from:
            return base_manifest(manifest.quantized_from)
    except active_model.ActivationRefused as exc:
        raise FinetuneRefused(f"Cannot fine-tune {key!r}: {exc}") from None
    if manifest.custom:
        raise FinetuneRefused(
            f"{key} runs custom weights that this service did not make, and fine-tuning "
            "starts from a model's own weights, which are not kept with its build. "
            "Fine-tune an official model with `--base KEY` instead."
        )
    return manifest


def check_enough(pictures: list[Picture], base: Manifest) -> None:
    corrected = sum(picture.corrected for picture in pictures)
    if corrected < 2:
        found = "no accepted corrections" if not corrected else "only one accepted correction"
        raise FinetuneRefused(
            f"There is {found}: fine-tuning {base.key} needs at least two, so that each can "
            "be checked against a head trained on the others. Accept corrections in the "
            "review queue, then try again."
        )


def finetune(
    *,
    base_key: str | None = None,
    activate: bool = False,
    user: AbstractBaseUser | None = None,
    progress: Callable[[int, int, int], bool] = lambda done, failed, total: True,
) -> Outcome | None:
    """Train and write a new version; activate it (and start its reclassification)
    with `activate`, unless it costs the known categories more than the allowed drop.
    `progress(done, failed, total)` follows the reading of the pictures; when it
    returns False the work stops there and None is returned (a cancelled job)."""
    base = base_manifest(base_key)
    spec = get_spec(base.name)
    weights = _official_weights(base)
    pictures = training_set(base)
    check_enough(pictures, base)

    module = engine.load_base(spec, weights, len(base.categories))
    readable: list[Picture] = []
    failed = [0]

    def images() -> Iterator[Image.Image]:
        for picture in pictures:
            image = _picture(picture)
            if image is None:
                failed[0] += 1
                continue
            readable.append(picture)
            yield image

    stopped = [False]

    def report(done: int) -> bool:
        stopped[0] = not progress(done, failed[0], len(pictures))
        return not stopped[0]

    features = engine.extract_features(
        module, spec, Preprocessor(base.preprocessing), images(), progress=report
    )
    if stopped[0]:
        return None
    progress(len(readable), failed[0], len(pictures))
    check_enough(readable, base)

    categories = list(base.categories)
    index = _category_index(categories)
    new_categories = []
    for name in sorted({p.label for p in readable}):
        if name.casefold() not in index:  # "Mittens" and "mittens" are one new category
            index[name.casefold()] = len(categories)
            categories.append(name)
            new_categories.append(name)
    labels = torch.tensor([index[p.label.casefold()] for p in readable])
    corrected = torch.tensor([p.corrected for p in readable])

    base_head = engine.head_of(module, spec)
    evaluation = engine.evaluate(base_head, features, labels, corrected, len(new_categories))
    if activate:
        _check_may_activate(evaluation, base)
    start = engine.extended_head(base_head, features, labels, len(new_categories))
    head = engine.train_head(start, features, labels, len(base.categories))
    record = {
        "base": base.key,
        "training_set_sha256": training_set_sha256(readable),
        "train_images": len(readable),
        "corrected_images": int(corrected.sum()),
        "new_categories": new_categories,
        "anchor_min_score": ANCHOR_MIN_SCORE,
        **asdict(evaluation),
    }
    manifest, built = _write(base, spec, engine.fine_tuned_state(module, spec, head), categories, record)
    outcome = Outcome(
        key=manifest.key,
        base=base.key,
        train_images=len(readable),
        new_categories=new_categories,
        cv_accuracy_before=evaluation.cv_accuracy_before,
        cv_accuracy_after=evaluation.cv_accuracy_after,
        known_accuracy_before=evaluation.known_accuracy_before,
        known_accuracy_after=evaluation.known_accuracy_after,
        folds=evaluation.folds,
        training_set_sha256=record["training_set_sha256"],
        built=built,
    )
    if not activate:
        return outcome
    active_model.activate(manifest.key, user=user)
    job = reclassify.reclassify_start(key=manifest.key, only_missing=True, owner=user)
    return Outcome(**{**asdict(outcome), "activated": True, "reclassification_job": job.pk})


def _official_weights(base: Manifest) -> Path:
    try:
        weights = obtain_official(get_spec(base.name))
    except WeightsError as exc:
        raise FinetuneRefused(f"The weights of {base.key} cannot be obtained here: {exc}") from None
    if weights.sha256 != base.weights_sha256:
        raise FinetuneRefused(
            f"{base.key} was prepared from other weights (SHA-256 {base.weights_sha256}) "
            f"than this installation has for {base.name} ({weights.sha256}). Prepare it "
            "again with `python manage.py prepare_model`, then fine-tune the new version."
        )
    return weights.path


def _category_index(categories: list[str]) -> dict[str, int]:
    """Name (any case) → index; a name listed twice means the first, as corrections take it."""
    index: dict[str, int] = {}
    for position, name in enumerate(categories):
        index.setdefault(name.casefold(), position)
    return index


def _picture(picture: Picture) -> Image.Image | None:
    try:
        return reclassify.stored_picture(picture.path, picture.sha256, None, work="Fine-tuning")
    except storage.StorageError as exc:
        logger.error("Fine-tuning cannot read the stored images: %s", exc)
        raise FinetuneRefused(
            "The stored images cannot be read right now (the image storage is unreachable "
            "or refusing); nothing was written. Try again once it is back."
        ) from None


def _check_may_activate(evaluation: engine.Evaluation, base: Manifest) -> None:
    before, after = evaluation.known_accuracy_before, evaluation.known_accuracy_after
    allowed = settings.RECOGNITION_FINETUNE_MAX_DROP
    if before is None or after is None:
        raise FinetuneRefused(
            f"Not activated, and nothing was written: no picture is confidently classified "
            f"by {base.key}, so what the new version costs its known categories cannot be "
            "measured. Run without --activate to write the version, and activate it by hand "
            "(`python manage.py activate_model KEY`) if it serves you."
        )
    if before - after > allowed:
        raise FinetuneRefused(
            f"Not activated, and nothing was written: cross-validated accuracy on the known "
            f"categories would drop from {before:.1%} to {after:.1%}, more than "
            f"RECOGNITION_FINETUNE_MAX_DROP ({allowed:.1%}) allows. Review the accepted "
            "corrections that contradict confident results, or run without --activate to "
            "write the version and judge it yourself."
        )


def _write(base: Manifest, spec, state: dict, categories: list[str], record: dict) -> tuple[Manifest, bool]:
    models_dir = Path(settings.RECOGNITION_MODELS_DIR)
    with tempfile.TemporaryDirectory(prefix=".finetune.", dir=_ensure(models_dir)) as scratch:
        weights, labels = Path(scratch) / "weights.pth", Path(scratch) / "labels.txt"
        torch.save(state, weights)
        labels.write_text("".join(f"{name}\n" for name in categories), encoding="utf-8")
        try:
            outcome = prepare(
                models_dir, model=spec.name, weights_file=weights, custom=True,
                labels_file=labels, fine_tuning=record, log=logger.info,
            )
        except (WeightsError, ArtifactError) as exc:
            raise FinetuneRefused(f"The fine-tuned version could not be prepared: {exc}") from None
    if settings.RECOGNITION_S3_BUCKET:
        try:
            published_models.publish(outcome.manifest)
        except storage.StorageError as exc:
            raise FinetuneRefused(
                f"{outcome.manifest.key} is prepared on this node but could not be published "
                f"to the object store ({exc}), so other nodes cannot serve it. Check the AWS_* "
                "variables and RECOGNITION_S3_BUCKET, then run fine-tuning again."
            ) from None
    return outcome.manifest, outcome.built


def _ensure(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    return directory


# --- As a background job (the admin's action) -------------------------------------------


def finetune_start(*, base_key: str | None = None, owner: AbstractBaseUser | None = None) -> Job:
    """Queue fine-tuning for a worker, once what would refuse it at once has been checked."""
    base = base_manifest(base_key)
    pictures = training_set(base)
    check_enough(pictures, base)
    return jobs.job_create(
        kind=JobKind.FINETUNE, owner=owner, total=len(pictures), options={"base": base.key}
    )


def _run(job_run: jobs.JobRun) -> None:
    job = job_run.job

    def progress(done: int, failed: int, total: int) -> bool:
        if total != job.total:
            Job.objects.filter(pk=job.pk).update(total=total)
            job.total = total
        job_run.progress(done=done, failed=failed)
        return not job_run.should_stop()

    outcome = finetune(base_key=job.options["base"], user=job.owner, progress=progress)
    if outcome is None:
        return  # cancelled
    Job.objects.filter(pk=job.pk).update(options={**job.options, "result": outcome.as_json()})
    job_run.progress(done=job.done, failed=job.failed, model_key=outcome.key, force=True)


jobs.register(JobKind.FINETUNE, _run)
