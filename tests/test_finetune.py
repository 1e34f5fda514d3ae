"""Learning from corrections: `manage.py finetune` trains a new head for the real
EfficientNet-Lite0 on stored pictures (accepted corrections as labels, confident results
as anchors) and writes a new verified version that has learnt the new labels; it refuses
what it cannot do in one paragraph, guards --activate by the known categories' accuracy,
and runs as a background job from the admin."""

from __future__ import annotations

import io
import json
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import skimage
from django.core.management import CommandError, call_command
from django.contrib.auth import get_user_model
from PIL import Image, ImageOps

from recognition import active_model, corrections, jobs, review
from recognition.engine import model_store
from recognition.engine.classifier import Classifier
from recognition.engine.manifest import Manifest
from recognition.models import Correction, Job, JobKind, JobStatus, ReviewDecision
from recognition.services import upload_classify
from tests.web_fixtures import as_upload

pytestmark = pytest.mark.django_db

DATA = Path(skimage.data_dir)
COFFEE, CHELSEA = DATA / "coffee.png", DATA / "chelsea.png"
MUG, CAT = "grandma's mug", "Mittens"
# Photos EfficientNet-Lite0 is sure of (top score ≥ 0.4, not uncertain): the anchors.
ANCHORS = [DATA / "rocket.jpg", DATA / "retina.jpg", DATA / "logo.png"]
# Photos nobody corrected, anchors or not: the new version must keep their top-1 label.
OTHERS = ANCHORS + [Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"]
TRAIN_CROPS = range(4)
FRESH_CROPS = range(100, 103)
JSON_KEYS = {"key", "base", "train_images", "new_categories", "cv_accuracy_before", "cv_accuracy_after"}


def crop(path: Path, seed: int) -> Image.Image:
    """A random crop (60-90 % of each side), maybe mirrored, slightly brighter or darker."""
    rng = np.random.default_rng(seed)
    image = Image.open(path).convert("RGB")
    width, height = image.size
    w, h = int(width * rng.uniform(0.6, 0.9)), int(height * rng.uniform(0.6, 0.9))
    left, top = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
    image = image.crop((left, top, left + w, top + h))
    if rng.random() < 0.5:
        image = ImageOps.mirror(image)
    pixels = np.asarray(image, dtype=np.float32) * rng.uniform(0.85, 1.15)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


@pytest.fixture
def lite0(settings, lite0_models_dir) -> str:
    """The real EfficientNet-Lite0 served and active; fine-tuned versions go beside it."""
    settings.RECOGNITION_MODELS_DIR, settings.RECOGNITION_MODEL = lite0_models_dir
    active_model.activate(lite0_models_dir[1])
    return lite0_models_dir[1]


def upload(user, data: bytes, name: str):
    return upload_classify(user=user, file=as_upload(data, name)).upload


def corrected(user, path: Path, seed: int, label: str, decision=ReviewDecision.ACCEPTED):
    """A crop uploaded, corrected by its owner and (by default) accepted in the review
    queue; decision None leaves the correction pending."""
    picture = upload(user, jpeg(crop(path, seed)), f"{path.stem}-{seed}.jpg")
    corrections.correction_set(user=user, upload_id=picture.pk, label=label)
    if decision is not None:
        review.review_decide(reviewer=_reviewer(), upload_id=picture.pk, decision=decision)
    return picture


def _reviewer():
    reviewer, _ = get_user_model().objects.get_or_create(
        username="reviewer", defaults={"is_staff": True, "is_superuser": True}
    )
    return reviewer


@pytest.fixture
def learning_set(lite0, alice) -> None:
    """Four crops of each photo corrected to a new free-text label (once in other
    letter case: the same category), and the anchors."""
    for seed in TRAIN_CROPS:
        corrected(alice, COFFEE, seed, MUG)
        corrected(alice, CHELSEA, seed, CAT.lower() if seed == TRAIN_CROPS[-1] else CAT)
    for path in ANCHORS:
        upload(alice, path.read_bytes(), path.name)


def top1(models_dir: Path, key: str, images: list[Image.Image]) -> list[str]:
    classifier = Classifier(models_dir, model=key, backend="onnxruntime")
    return [r.predictions[0].label for r in classifier.classify(images, top_k=1)]


def finetune_json(*args: str) -> dict:
    out = io.StringIO()
    call_command("finetune", "--json", *args, stdout=out, stderr=io.StringIO())
    return json.loads(out.getvalue().strip().splitlines()[-1])


def test_a_finetuned_version_names_the_corrected_photos_by_their_new_labels_and_keeps_the_others(
    learning_set, lite0, lite0_models_dir
):
    models_dir = lite0_models_dir[0]

    result = finetune_json()

    assert set(result) == JSON_KEYS
    assert (result["base"], result["train_images"]) == (lite0, 8 + len(ANCHORS))
    assert result["new_categories"] == sorted([MUG, CAT])
    assert result["cv_accuracy_before"] == 0.0  # the base model cannot say a new label
    assert result["cv_accuracy_after"] == 1.0
    new = Manifest.read(models_dir / result["key"])
    base = Manifest.read(models_dir / lite0)
    assert new.custom and new.categories == base.categories + sorted([MUG, CAT])
    assert (new.fine_tuning["base"], len(new.fine_tuning["training_set_sha256"])) == (lite0, 64)
    assert new.fine_tuning["cv_accuracy_after"] == result["cv_accuracy_after"]
    assert new.onnx_sha256 and new.artifact_sha256  # through the verified prepare pipeline
    assert active_model.current_key() == lite0  # written, not activated

    fresh = [crop(COFFEE, seed) for seed in FRESH_CROPS] + [crop(CHELSEA, seed) for seed in FRESH_CROPS]
    assert top1(models_dir, result["key"], fresh) == [MUG] * 3 + [CAT] * 3
    others = [Image.open(path).convert("RGB") for path in OTHERS]
    assert top1(models_dir, result["key"], others) == top1(models_dir, lite0, others)


def test_the_same_corrections_give_the_same_version(learning_set, lite0_models_dir):
    first = finetune_json()
    second = finetune_json()

    assert first == second
    assert Manifest.read(lite0_models_dir[0] / first["key"]).fine_tuning["train_images"] == 11


def test_activate_makes_the_new_version_active_and_starts_its_reclassification(learning_set, lite0):
    result = finetune_json("--activate")

    assert active_model.current_key() == result["key"]
    job = Job.objects.get(kind=JobKind.RECLASSIFY)
    assert (job.model_key, job.status, job.options["only_missing"]) == (result["key"], "queued", True)


def test_activate_is_refused_when_the_known_categories_would_lose_accuracy(
    learning_set, lite0, lite0_models_dir, alice, settings
):
    # An uncorrected crop of the coffee photo stays an "espresso" anchor, against the
    # corrected crops of the same photo: a head that learns the mug must get it wrong.
    upload(alice, jpeg(crop(COFFEE, 50)), "another-coffee.jpg")
    settings.RECOGNITION_FINETUNE_MAX_DROP = 0
    keys = model_store.prepared_keys(lite0_models_dir[0])

    with pytest.raises(CommandError) as refused:
        call_command("finetune", "--activate", stderr=io.StringIO())

    message = str(refused.value)
    assert "accuracy on the known categories would drop" in message and "\n" not in message
    assert "RECOGNITION_FINETUNE_MAX_DROP (0.0%)" in message
    assert active_model.current_key() == lite0
    assert model_store.prepared_keys(lite0_models_dir[0]) == keys  # nothing written
    assert not Job.objects.exists()


@pytest.mark.parametrize(
    "decisions, found",
    [
        ([], "no accepted corrections"),
        ([None, ReviewDecision.REJECTED], "no accepted corrections"),
        ([ReviewDecision.ACCEPTED, None], "only one accepted correction"),
    ],
)
def test_too_few_accepted_corrections_are_refused_in_one_paragraph(lite0, alice, decisions, found):
    for seed, decision in enumerate(decisions):
        corrected(alice, COFFEE, seed, MUG, decision=decision)
    assert Correction.objects.count() == len(decisions)

    with pytest.raises(CommandError) as refused:
        call_command("finetune", stderr=io.StringIO())

    assert found in str(refused.value) and "\n" not in str(refused.value)
    assert "at least two" in str(refused.value)


def test_a_base_that_is_not_prepared_or_runs_foreign_custom_weights_is_refused(
    lite0, session_model_key, settings, prepared_models_dir
):
    with pytest.raises(CommandError) as unknown:
        call_command("finetune", "--base", "efficientnet_lite0-000000000000")
    assert "'efficientnet_lite0-000000000000' is not a prepared model" in str(unknown.value)

    settings.RECOGNITION_MODELS_DIR = prepared_models_dir  # the random-weights ResNet-18
    with pytest.raises(CommandError) as custom:
        call_command("finetune", "--base", session_model_key)
    assert "custom weights that this service did not make" in str(custom.value)
    assert "\n" not in str(unknown.value) + str(custom.value)


def test_the_admin_queues_a_finetune_job_that_a_worker_completes(
    learning_set, lite0, superuser_client
):
    row = active_model.current()

    response = superuser_client.post(
        "/admin/recognition/activemodel/",
        {"action": "finetune_from_corrections", "_selected_action": [row.pk]},
        follow=True,
    )

    job = Job.objects.get(kind=JobKind.FINETUNE)
    assert (job.status, job.owner.username, job.total, job.options["base"]) == ("queued", "root", 11, lite0)
    assert f'href="/admin/recognition/job/{job.pk}/change/"' in response.content.decode()
    assert jobs.run(job.pk) == JobStatus.DONE  # what the worker does with it
    job.refresh_from_db()
    assert (job.done, job.failed, job.model_key) == (11, 0, job.options["result"]["key"])
    assert set(job.options["result"]) == JSON_KEYS
    assert active_model.current_key() == lite0  # the admin activates it, after reading
    listing = superuser_client.get("/admin/recognition/job/?kind=finetune").content.decode()
    assert "11 / 11" in listing and job.model_key in listing


def test_a_cancelled_finetune_job_writes_nothing(learning_set, lite0, lite0_models_dir, superuser):
    from recognition import finetune

    keys = model_store.prepared_keys(lite0_models_dir[0])
    job = finetune.finetune_start(owner=superuser)
    Job.objects.filter(pk=job.pk).update(cancel_requested=True, status=JobStatus.RUNNING)

    assert jobs.run(job.pk) == JobStatus.CANCELLED

    assert model_store.prepared_keys(lite0_models_dir[0]) == keys
