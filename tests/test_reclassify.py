"""Reclassification when the model changes: `manage.py reclassify` classifies every stored
image with another real prepared model, keeps the old results, resumes where a job
stopped; activation and reclassification point uploads at the active model's result;
the comparison report (admin and API) counts what changed."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import matplotlib
import pytest
import skimage
from django.core.management import CommandError, call_command
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from recognition import active_model, jobs, model_comparison, reclassify, storage
from recognition.models import Classification, Job, JobStatus, Upload
from recognition.services import upload_classify
from tests.web_fixtures import as_upload

pytestmark = pytest.mark.django_db

PHOTOS = [
    Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg",
    Path(skimage.__file__).parent / "data" / "chelsea.png",
    Path(skimage.__file__).parent / "data" / "coffee.png",
]
COMPARE = "/api/v1/models/compare/"


@pytest.fixture
def models(two_models_dir, settings, served_from_the_active_row):
    """Model A active, B prepared beside it: (A, B)."""
    models_dir, first, second = two_models_dir
    settings.RECOGNITION_MODELS_DIR = models_dir
    active_model.activate(first)
    return first, second


def upload_photos(user, names=PHOTOS) -> list[Upload]:
    return [
        upload_classify(user=user, file=as_upload(path.read_bytes(), path.name)).upload
        for path in names
    ]


def by_version(key: str):
    name, version = key.rsplit("-", 1)
    return Classification.objects.filter(model_name=name, model_version=version)


def api_client(user=None) -> APIClient:
    client = APIClient()
    if user is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def test_reclassifying_classifies_every_image_with_the_new_model_and_keeps_the_old_results(
    models, alice, bob, make_image
):
    a, b = models
    uploads = upload_photos(alice) + upload_photos(bob, PHOTOS[:1])  # Bob's is a repeat
    unreadable = upload_classify(user=alice, file=as_upload(make_image(), "gone.jpg")).upload
    storage.delete(unreadable.stored_image.path)  # its file lost: counted as failed
    def results_of_a() -> dict:
        return {row[0]: row[1:] for row in by_version(a).values_list("stored_image_id", "pk", "top_label", "top_score")}

    old = results_of_a()

    message = call_command("reclassify", "--model", b)

    [job] = Job.objects.all()
    assert (job.status, job.model_key, job.total, job.done, job.failed) == (
        JobStatus.DONE, b, 4, 3, 1,
    )
    assert f"Reclassified 3 of 4 images with {b}; 1 could not be read" in message
    readable = {u.stored_image_id for u in uploads}
    assert set(by_version(b).values_list("stored_image_id", flat=True)) == readable
    assert results_of_a() == old  # A's results stay, untouched
    # B is not the active model: every upload still shows A's result.
    assert set(Upload.objects.values_list("classification_id", flat=True)) == {
        pk for pk, _, _ in old.values()
    }

    # The report, against the rows themselves. Random weights rarely agree: two images
    # are made to, so agreement and changes both have something to count.
    for agreed in by_version(a).filter(stored_image_id__in=readable)[:2]:
        by_version(b).filter(stored_image=agreed.stored_image).update(top_label=agreed.top_label)
    pairs = [
        (c.top_label, by_version(b).get(stored_image_id=c.stored_image_id).top_label)
        for c in by_version(a).filter(stored_image_id__in=readable)
    ]
    changes = Counter((before, after) for before, after in pairs if before != after)
    report = model_comparison.compare(a, b)
    assert report.count == len(pairs) == 3
    assert report.agreeing == sum(before == after for before, after in pairs)
    assert {(c.old_label, c.new_label): c.count for c in report.changes} == changes
    assert {f.label: (f.changed, f.total) for f in report.flips} == {
        label: (sum(n for (before, _), n in changes.items() if before == label),
                sum(before == label for before, _ in pairs))
        for label, _ in pairs
    }

    # Only the missing ones: the image without a file is tried again, nothing else.
    classifications = Classification.objects.count()
    call_command("reclassify", "--model", b, "--only-missing")
    rerun = Job.objects.latest("created_at", "pk")
    assert (rerun.pk != job.pk, rerun.total, rerun.done, rerun.failed) == (True, 1, 0, 1)
    assert Classification.objects.count() == classifications


def test_running_the_command_again_resumes_a_cancelled_job_after_its_cursor(
    models, alice, make_image
):
    a, b = models
    uploads = [upload_classify(user=alice, file=as_upload(make_image())).upload for _ in range(4)]
    ids = sorted(u.stored_image_id for u in uploads)
    job = jobs.cancel(reclassify.reclassify_start(key=b))
    # As a run cancelled (Ctrl-C) after the first two images leaves it.
    Job.objects.filter(pk=job.pk).update(cursor=ids[1], done=2)

    call_command("reclassify", "--model", b)

    job.refresh_from_db()
    assert Job.objects.count() == 1  # resumed, not started anew
    assert (job.status, job.done, job.failed, job.total) == (JobStatus.DONE, 4, 0, 4)
    assert sorted(by_version(b).values_list("stored_image_id", flat=True)) == ids[2:]


def test_uploads_show_the_active_models_result_once_it_exists_and_older_ones_are_marked(
    models, alice, alice_api, alice_client
):
    a, b = models
    first, second = upload_photos(alice, PHOTOS[:2])
    active_model.activate(b)  # B has classified nothing yet: both stay on A, marked
    third = upload_photos(alice, PHOTOS[2:])[0]  # classified by B

    def current() -> dict[int, bool]:
        listed = alice_api.get("/api/v1/classifications/").json()["results"]
        return {item["id"]: item["model"]["current"] for item in listed}

    assert current() == {first.pk: False, second.pk: False, third.pk: True}
    assert "from an older model" in alice_client.get(f"/uploads/{first.pk}/").content.decode()
    assert "from an older model" not in alice_client.get(f"/uploads/{third.pk}/").content.decode()

    call_command("reclassify")  # the active model, B: each upload follows its image

    assert current() == {first.pk: True, second.pk: True, third.pk: True}
    assert set(Upload.objects.values_list("classification__model_version", flat=True)) == {
        b.rsplit("-", 1)[1]
    }

    call_command("activate_model", "--rollback")  # back to A: where A has a result

    shown = dict(Upload.objects.values_list("pk", "classification__model_version"))
    assert shown == {
        first.pk: a.rsplit("-", 1)[1], second.pk: a.rsplit("-", 1)[1], third.pk: b.rsplit("-", 1)[1]
    }
    assert current() == {first.pk: True, second.pk: True, third.pk: False}


def test_the_active_models_first_result_for_an_image_is_shown_on_every_users_upload_of_it(
    models, alice, bob
):
    a, b = models
    bobs = upload_photos(bob, PHOTOS[:1])[0]
    active_model.activate(b)  # B has not seen the photo: Bob's upload stays on A

    upload_photos(alice, PHOTOS[:1])  # the same photo, classified by B now

    bobs.refresh_from_db()
    assert bobs.classification.model_version == b.rsplit("-", 1)[1]


def test_an_unknown_model_is_refused_in_one_paragraph_and_starts_nothing(models):
    with pytest.raises(CommandError) as refused:
        call_command("reclassify", "--model", "resnet18-000000000000")

    message = str(refused.value)
    assert "'resnet18-000000000000' is not a prepared model" in message
    assert models[1] in message and "\n" not in message
    assert not Job.objects.exists()


def test_the_comparison_is_for_staff_only_and_explains_bad_keys(models, alice, superuser):
    a, b = models
    upload_photos(alice, PHOTOS[:2])
    call_command("reclassify", "--model", b)
    staff = api_client(superuser)
    query = {"from": a, "to": b}

    assert api_client().get(COMPARE, query).status_code == 401
    assert api_client(alice).get(COMPARE, query).status_code == 403
    answer = staff.get(COMPARE, query)
    assert answer.status_code == 200
    report = model_comparison.compare(a, b)
    assert answer.json()["count"] == report.count == 2
    assert answer.json()["agreeing"] == report.agreeing
    assert (answer.json()["from"], answer.json()["to"]) == (a, b)

    unknown = staff.get(COMPARE, {"from": a, "to": "resnet18-000000000000"})
    same = staff.get(COMPARE, {"from": a, "to": a})
    no_default = staff.get(COMPARE)  # A was active first: nothing before it to compare

    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "unknown_model_version")
    assert a in unknown.json()["error"]["message"] and b in unknown.json()["error"]["message"]
    assert (same.status_code, same.json()["error"]["code"]) == (400, "invalid_comparison")
    assert no_default.status_code == 400


def test_the_admin_starts_a_reclassification_shows_its_progress_and_the_report(
    models, alice, superuser_client
):
    a, b = models
    upload_photos(alice, PHOTOS[:2])
    row = active_model.activate(b)

    response = superuser_client.post(
        "/admin/recognition/activemodel/",
        {"action": "reclassify_with_active_model", "_selected_action": [row.pk]},
        follow=True,
    )

    job = Job.objects.get()
    assert (job.model_key, job.owner.username, job.status, job.total) == (b, "root", "queued", 2)
    assert f'href="/admin/recognition/job/{job.pk}/change/"' in response.content.decode()
    jobs.run(job.pk)  # what the worker does with it
    listing = superuser_client.get("/admin/recognition/job/").content.decode()
    assert "2 / 2" in listing and b in listing
    report = superuser_client.get("/admin/recognition/job/compare/").content.decode()
    # Default: the model active before (A) against the active one (B).
    assert f"{a} → {b}" in report
    assert "<strong>2</strong> images classified by both" in report
