"""Bulk import through the API, run by the worker's own job function in this process:
what a user sends, what lands in their history, what is refused, and that a rerun after
a crash redoes nothing finished."""

from __future__ import annotations

import pytest

from recognition import jobs, storage
from recognition.models import Job, JobItem, JobItemStatus, JobStatus, Upload
from tests.web_fixtures import as_upload

pytestmark = pytest.mark.django_db

IMPORTS = "/api/v1/imports/"


def start(api, files: list[tuple[str, bytes]], **fields):
    payload = {"files": [as_upload(data, name) for name, data in files], **fields}
    return api.post(IMPORTS, payload, format="multipart")


def test_an_import_classifies_every_picture_in_batches_and_refuses_a_text_file(
    alice, alice_api, make_image, inference_calls, settings
):
    settings.RECOGNITION_MAX_BATCH = 4
    pictures = [(f"photo-{n}.jpg", make_image()) for n in range(6)]
    response = start(alice_api, [*pictures, ("notes.txt", b"not a picture at all")])
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["status"] == "queued" and body["total"] == 7 and body["done"] == 0
    assert body["url"].endswith(f"/api/v1/imports/{body['id']}/")

    assert jobs.run(body["id"]) == JobStatus.DONE

    job = alice_api.get(f"{IMPORTS}{body['id']}/").json()
    assert (job["status"], job["total"], job["done"], job["failed"]) == ("done", 7, 6, 1)
    assert job["rate"] > 0 and job["seconds_left"] == 0
    items = {item["filename"]: item for item in job["items"]}
    refused = items.pop("notes.txt")
    assert refused["status"] == "failed" and refused["classification_id"] is None
    assert refused["error"]["code"] == "unsupported_type", refused
    history = {upload.pk: upload.original_filename for upload in Upload.objects.filter(user=alice)}
    assert {items[name]["classification_id"] for name, _ in pictures} == set(history)
    assert sorted(history.values()) == sorted(name for name, _ in pictures)
    # One forward pass per batch of four, not one per picture.
    assert inference_calls == [4, 2]
    # The staged copies are gone once the job has ended.
    assert list(storage.list_files("imports")) == []


def test_imported_pictures_dedupe_against_earlier_uploads_like_single_uploads(
    alice, alice_api, make_image
):
    data = make_image()
    assert alice_api.post("/api/v1/classifications/", {"image": as_upload(data)}).status_code == 201
    job_id = start(alice_api, [("again.jpg", data), ("new.jpg", make_image())]).json()["id"]
    jobs.run(job_id)
    assert Upload.objects.filter(user=alice).count() == 2
    assert Job.objects.get(pk=job_id).done == 2


class WorkerKilled(BaseException):
    """What a SIGKILL looks like from inside: nothing of the job's own handling runs."""


def test_a_rerun_after_a_crash_finishes_only_what_was_left_and_each_item_once(
    alice, alice_api, make_image, inference_calls, settings, monkeypatch
):
    settings.RECOGNITION_MAX_BATCH = 2
    job_id = start(alice_api, [(f"p{n}.png", make_image("PNG")) for n in range(5)]).json()["id"]
    real_progress = jobs.JobRun.progress

    def killed_after_the_first_batch(self, **counts):
        real_progress(self, **counts)
        if counts["done"] >= 2:
            raise WorkerKilled()

    monkeypatch.setattr(jobs.JobRun, "progress", killed_after_the_first_batch)
    with pytest.raises(WorkerKilled):
        jobs.run(job_id)
    monkeypatch.setattr(jobs.JobRun, "progress", real_progress)
    job = Job.objects.get(pk=job_id)
    assert (job.status, job.done) == (JobStatus.RUNNING, 2)
    Job.objects.filter(pk=job_id).update(claimed_at=None)  # as the claim goes stale
    inference_calls.clear()

    assert jobs.run(job_id) == JobStatus.DONE
    job.refresh_from_db()
    assert (job.done, job.failed, job.total) == (5, 0, 5)
    assert inference_calls == [2, 1]  # only the three pictures left
    assert Upload.objects.filter(user=alice).count() == 5
    assert JobItem.objects.filter(job=job, status=JobItemStatus.DONE).count() == 5
    assert list(storage.list_files("imports")) == []


def test_a_queued_import_cancelled_ends_at_once_and_never_runs(alice_api, make_image):
    job_id = start(alice_api, [("a.jpg", make_image()), ("b.jpg", make_image())]).json()["id"]
    response = alice_api.post(f"{IMPORTS}{job_id}/cancel/")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    assert jobs.run(job_id) == "nothing to do"
    statuses = set(JobItem.objects.filter(job_id=job_id).values_list("status", flat=True))
    assert statuses == {JobItemStatus.CANCELLED}
    assert Upload.objects.count() == 0


def test_a_running_import_cancelled_stops_before_its_next_batch(
    alice_api, make_image, settings, monkeypatch
):
    settings.RECOGNITION_MAX_BATCH = 2
    job_id = start(alice_api, [(f"p{n}.jpg", make_image()) for n in range(8)]).json()["id"]
    real_progress = jobs.JobRun.progress

    def cancel_after_first_batch(self, **counts):
        real_progress(self, **counts)
        if counts["done"] >= 2:
            Job.objects.filter(pk=job_id).update(cancel_requested=True)

    monkeypatch.setattr(jobs.JobRun, "progress", cancel_after_first_batch)
    assert jobs.run(job_id) == JobStatus.CANCELLED
    job = Job.objects.get(pk=job_id)
    assert job.done == 2 and job.items.filter(status=JobItemStatus.CANCELLED).count() == 6


def test_another_users_import_does_not_exist_for_them(alice_api, bob_api, make_image):
    job_id = start(alice_api, [("a.jpg", make_image())]).json()["id"]
    assert bob_api.get(f"{IMPORTS}{job_id}/").status_code == 404
    assert bob_api.post(f"{IMPORTS}{job_id}/cancel/").status_code == 404
    assert bob_api.get(IMPORTS).json()["count"] == 0
    assert alice_api.get(IMPORTS).json()["count"] == 1


def test_an_import_larger_than_the_days_allowance_is_refused_up_front(
    alice_api, make_image, settings
):
    settings.RECOGNITION_IMPORT_RATE = 3
    assert start(alice_api, [("a.jpg", make_image()), ("b.jpg", make_image())]).status_code == 202
    response = start(alice_api, [("c.jpg", make_image()), ("d.jpg", make_image())])
    assert response.status_code == 429
    error = response.json()["error"]
    assert error["code"] == "import_allowance_exceeded" and "only 1 of your 3" in error["message"]
    assert Job.objects.count() == 1


@pytest.mark.parametrize(
    "payload, code",
    [({}, "nothing_to_import"), ({"top_k": 0}, "invalid_input")],
)
def test_an_import_without_pictures_or_with_a_bad_top_k_is_a_400(alice_api, make_image, payload, code):
    if "top_k" in payload:
        payload = {"files": [as_upload(make_image())], **payload}
    response = alice_api.post(IMPORTS, payload, format="multipart")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert Job.objects.count() == 0


def test_one_running_import_per_user_the_next_starts_when_it_ends(alice, alice_api, make_image):
    first = start(alice_api, [("a.jpg", make_image())]).json()["id"]
    second = start(alice_api, [("b.jpg", make_image())]).json()["id"]
    Job.objects.filter(pk=first).update(status=JobStatus.RUNNING)
    from django.utils import timezone

    Job.objects.filter(pk=first).update(claimed_at=timezone.now())
    assert jobs.run(second) == "nothing to do"  # waits behind the running one
    assert Job.objects.get(pk=second).status == JobStatus.QUEUED
