"""Reclassification: every stored image classified again with one prepared model
version (or only the images it has not classified yet), by a worker, a batch at a time.

Old classifications stay: each model version has its own row per image, and a version's
existing row is recomputed in place (services.classifications_record). When the job's
model is the active one, the uploads of each reclassified image are pointed at the new
result as it lands (active_model.repoint_uploads), as activation does for the images
classified before it.

The job covers the images stored when it was started (options["last_image"]), in the
order of their ids; `cursor` is the last id finished, so a run that stopped (a cancel,
a dead worker, Ctrl-C in the command) resumes after it without redoing anything.
"""

from __future__ import annotations

import logging
from pathlib import Path

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.db.models import Exists, Max, OuterRef, QuerySet
from PIL import Image

from . import active_model, jobs, published_models, storage
from .configured_classifier import get_classifier
from .engine.backends import BackendError
from .engine.classifier import Classifier, ModelUnavailable, Recognition
from .engine.images import ImageRejected, decode_image
from .engine.manifest import ArtifactError
from .errors import ServiceError
from .models import MAX_STORED_PREDICTIONS, Classification, Job, JobKind, JobStatus, StoredImage
from .services import classifications_record

logger = logging.getLogger(__name__)


class ReclassifyRefused(ServiceError):
    """The job cannot be started; the message is one paragraph with the fix."""

    code = "reclassify_refused"


def default_key() -> str | None:
    """The model a reclassification uses unless told otherwise: the one new uploads are
    classified with (RECOGNITION_MODEL when it pins one, else the active model)."""
    return active_model.served_key()


def reclassify_start(
    *, key: str | None = None, only_missing: bool = False, owner: AbstractBaseUser | None = None
) -> Job:
    """Queue the reclassification of every stored image (only those without a
    classification by this version with `only_missing`) with the prepared model `key`
    (default: default_key()). The newest unfinished job of the same model and mode is
    resumed instead of starting another; it is returned either way."""
    key = key or default_key()
    if not key:
        raise ReclassifyRefused(
            "No model is active yet, so there is nothing to reclassify with. Name one with "
            "`--model KEY`, or activate one with `python manage.py activate_model KEY`."
        )
    try:
        manifest = active_model.prepared_manifest(key)
    except active_model.ActivationRefused as exc:
        raise ReclassifyRefused(f"Cannot reclassify with {key!r}: {exc}") from None
    resumed = _resume(key, only_missing)
    if resumed is not None:
        return resumed
    last_image = StoredImage.objects.aggregate(last=Max("pk"))["last"] or 0
    options = {
        "model_name": manifest.name,
        "model_version": manifest.version,
        "only_missing": only_missing,
        "last_image": last_image,
    }
    total = _images_to_do(options, after=0).count()
    job = jobs.job_create(
        kind=JobKind.RECLASSIFY, owner=owner, total=total, options=options, model_key=key
    )
    logger.info("Reclassification %s with %s queued: %s images", job.pk, key, total)
    return job


def resumable_job(key: str, only_missing: bool) -> Job | None:
    """The newest reclassification with this model and mode that did not get to the end."""
    return (
        Job.objects.filter(kind=JobKind.RECLASSIFY, model_key=key, options__only_missing=only_missing)
        .exclude(status=JobStatus.DONE)
        .order_by("-created_at", "-pk")
        .first()
    )


def _resume(key: str, only_missing: bool) -> Job | None:
    job = resumable_job(key, only_missing)
    if job is None:
        return None
    if job.finished:
        jobs.reopen(job)  # cancelled or failed: it resumes after its cursor
    logger.info("Reclassification %s with %s resumed after image %s", job.pk, key, job.cursor)
    return job


def _images_to_do(options: dict, *, after: int) -> QuerySet[StoredImage]:
    images = StoredImage.objects.filter(pk__gt=after, pk__lte=options["last_image"])
    if options["only_missing"]:
        classified = Classification.objects.filter(
            stored_image=OuterRef("pk"),
            model_name=options["model_name"],
            model_version=options["model_version"],
        )
        images = images.exclude(Exists(classified))
    return images.order_by("pk")


# --- The worker's side -----------------------------------------------------------------


class _JobModel:
    """The job's model: this process's own classifier when it serves that version (the
    model stays loaded once), else one loaded for the job alone, fetched from the object
    store first when this node lacks it. Every result is checked against the version,
    so a switch of the active model mid-job never records another model's labels."""

    def __init__(self, key: str, name: str, version: str):
        self.key, self.name, self.version = key, name, version
        self._own: Classifier | None = None

    def classify(self, images: list[Image.Image]) -> list[Recognition]:
        if not images:
            return []
        if self._own is None and active_model.served_key() == self.key:
            results = get_classifier().classify(images, top_k=MAX_STORED_PREDICTIONS)
            if all((r.model.name, r.model.version) == (self.name, self.version) for r in results):
                return results
        return self._own_classifier().classify(images, top_k=MAX_STORED_PREDICTIONS)

    def decode_side(self) -> int:
        if self._own is None and active_model.served_key() == self.key:
            return get_classifier().decode_side()
        return self._own_classifier().decode_side()

    def _own_classifier(self) -> Classifier:
        if self._own is not None:
            return self._own
        models_dir = Path(settings.RECOGNITION_MODELS_DIR)
        backend = settings.RECOGNITION_BACKEND
        try:
            published_models.ensure_local(models_dir, self.key, backend)
            classifier = Classifier(
                models_dir, model=self.key, threads=settings.RECOGNITION_TORCH_THREADS, backend=backend
            )
            identity = classifier.identity()  # loads and verifies it now
        except ModelUnavailable as exc:
            logger.error("Reclassification cannot load %s: %s", self.key, exc)
            raise jobs.JobFailed(f"The model {self.key} cannot be loaded: {exc.public}") from None
        except (ArtifactError, BackendError, OSError) as exc:
            # OSError: the object store (StorageError) or this node's disk.
            logger.error("Reclassification cannot fetch %s: %s", self.key, exc)
            raise jobs.JobFailed(
                f"The model {self.key} cannot be fetched to this worker; see its log."
            ) from None
        if (identity.name, identity.version) != (self.name, self.version):
            raise jobs.JobFailed(f"The build named {self.key} is another model version now.")
        self._own = classifier
        return classifier

    def close(self) -> None:
        if self._own is not None:
            self._own.close()


def _run(job_run: jobs.JobRun) -> None:
    job = job_run.job
    options = job.options
    model = _JobModel(job.model_key, options["model_name"], options["model_version"])
    done, failed, cursor = job.done, job.failed, job.cursor
    min_side = model.decode_side() if settings.RECOGNITION_JPEG_DRAFT else None
    try:
        while not job_run.should_stop():
            batch = list(_images_to_do(options, after=cursor)[: settings.RECOGNITION_MAX_BATCH])
            if not batch:
                _finish(job_run, done, failed)
                return
            readable, pictures = [], []
            for stored in batch:
                picture = _picture(stored, min_side)
                if picture is None:
                    failed += 1
                else:
                    readable.append(stored)
                    pictures.append(picture)
            classifications_record(list(zip(readable, model.classify(pictures))))
            active_model.repoint_uploads_if_active(
                options["model_name"], options["model_version"],
                stored_image_ids=[stored.pk for stored in readable],
            )
            done += len(readable)
            cursor = batch[-1].pk
            job_run.progress(done=done, failed=failed, cursor=cursor, force=True)
    finally:
        model.close()


def _picture(stored: StoredImage, min_side: int | None) -> Image.Image | None:
    try:
        return stored_picture(stored.path, stored.sha256, min_side, work="Reclassification")
    except storage.StorageError as exc:
        # Not this image's fault: the next images would fail alike. Run again to resume.
        logger.error("Reclassification cannot read the stored images: %s", exc)
        raise jobs.JobFailed(
            "The stored images cannot be read right now (the image storage is unreachable "
            "or refusing). Start the reclassification again to resume it."
        ) from None


def stored_picture(path: str, sha256: str, min_side: int | None, *, work: str) -> Image.Image | None:
    """A stored image, decoded as an upload is; None (logged, naming the `work`) when its
    file is gone or cannot be decoded. storage.StorageError when the storage fails."""
    try:
        with storage.open_file(path) as file:
            data = file.read()
    except FileNotFoundError:
        logger.warning("%s: image %s has no file (%s)", work, sha256, path)
        return None
    try:
        return decode_image(data, max_pixels=settings.RECOGNITION_MAX_PIXELS, min_side=min_side).image
    except ImageRejected as exc:
        logger.warning("%s: image %s cannot be decoded: %s", work, sha256, exc.message)
        return None


def _finish(job_run: jobs.JobRun, done: int, failed: int) -> None:
    job = job_run.job
    job_run.progress(done=done, failed=failed, force=True)
    if done + failed != job.total:
        # Images deleted (or, with only_missing, classified by an upload) since the job
        # started were never there to do: the total says what there was.
        Job.objects.filter(pk=job.pk).update(total=done + failed)
        job.total = done + failed
    # Closes the gap of an activation that committed between a batch and its check.
    active_model.repoint_uploads_if_active(job.options["model_name"], job.options["model_version"])


jobs.register(JobKind.RECLASSIFY, _run)
