"""Bulk import through the API, run by the worker's own job function in this process:
what a user sends (pictures, or one ZIP archive of them), what lands in their history,
what is refused (per item, or the whole request), and that a rerun after a crash redoes
nothing finished."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import matplotlib
import pytest
import skimage
from django.utils import timezone

from recognition import jobs, storage
from recognition.configured_classifier import get_classifier
from recognition.models import Job, JobItem, JobItemStatus, JobStatus, Upload
from tests.test_archives import THREE, _bomb, build, local_header, symlink, with_flag
from tests.web_fixtures import as_upload, image_bytes, media_files, stored_bytes

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
    served = get_classifier().identity()
    assert job["model"] == f"{served.name}-{served.version}"  # the version it used
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


def run_killed_after_the_first_batch(job_id: int, monkeypatch) -> None:
    """Run the job until its first two pictures are done, then kill the worker."""
    real_progress = jobs.JobRun.progress

    def killed_after_the_first_batch(self, **counts):
        real_progress(self, **counts)
        if counts["done"] >= 2:
            raise WorkerKilled()

    monkeypatch.setattr(jobs.JobRun, "progress", killed_after_the_first_batch)
    with pytest.raises(WorkerKilled):
        jobs.run(job_id)
    monkeypatch.setattr(jobs.JobRun, "progress", real_progress)


def test_a_rerun_after_a_crash_finishes_only_what_was_left_and_each_item_once(
    alice, alice_api, make_image, inference_calls, settings, monkeypatch
):
    settings.RECOGNITION_MAX_BATCH = 2
    job_id = start(alice_api, [(f"p{n}.png", make_image("PNG")) for n in range(5)]).json()["id"]
    run_killed_after_the_first_batch(job_id, monkeypatch)
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


def test_a_worker_whose_import_was_taken_over_stops_after_its_batch_and_leaves_it_to_the_new_one(
    alice_api, make_image, inference_calls, settings, monkeypatch
):
    settings.RECOGNITION_MAX_BATCH = 2
    job_id = start(alice_api, [(f"p{n}.png", make_image("PNG")) for n in range(6)]).json()["id"]
    real_progress = jobs.JobRun.progress
    taken_at = timezone.now() + timedelta(seconds=1)

    def stalled_then_taken_over(self, **counts):
        # The fault: this worker stalled past the stale limit, and another one's claim
        # (what jobs._claim writes) replaced its own while it worked on its first batch.
        if counts["done"] >= 2:
            Job.objects.filter(pk=job_id).update(claimed_at=taken_at)
        real_progress(self, **counts)

    monkeypatch.setattr(jobs.JobRun, "progress", stalled_then_taken_over)
    assert jobs.run(job_id) == "taken over"

    assert inference_calls == [2]  # no second batch beside the new owner
    job = Job.objects.get(pk=job_id)
    # Still the new owner's, running: not ended, and its claim not overwritten.
    assert (job.status, job.claimed_at, job.finished_at) == (JobStatus.RUNNING, taken_at, None)
    assert job.items.filter(status=JobItemStatus.PENDING).count() == 4
    assert list(storage.list_files("imports")) != []  # the new owner still needs them


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


# --- ZIP archives ------------------------------------------------------------------------

PHOTOS = {  # real photographs, so the two that import are pictures any model would take
    "grace_hopper.jpg": Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg",
    "chelsea.png": Path(skimage.__file__).parent / "data" / "chelsea.png",
}


def start_archive(api, data: bytes, name: str = "pictures.zip", **fields):
    payload = {"archive": as_upload(data, name, "application/zip"), **fields}
    return api.post(IMPORTS, payload, format="multipart")


def staged() -> list[str]:
    return sorted(file.name for file in storage.list_files("imports"))


def assert_nothing_recorded_or_staged() -> None:
    assert not Job.objects.exists() and not JobItem.objects.exists()
    assert staged() == []


def test_an_archive_imports_its_pictures_and_fails_each_hostile_entry_with_its_own_code(
    alice, alice_api, make_image, inference_calls
):
    # An earlier upload's stored image, and an entry named exactly like it: the import's
    # cleanup deletes the staged archive, never a storage name an archive chose.
    earlier = make_image()
    assert alice_api.post("/api/v1/classifications/", {"image": as_upload(earlier)}).status_code == 201
    [stored_name] = media_files()
    secret = build(("secret.png", make_image("PNG")), ("kept.png", make_image("PNG")))
    data = build(
        ("trip/", b""),
        ("trip/grace_hopper.jpg", PHOTOS["grace_hopper.jpg"].read_bytes()),
        ("chelsea.png", PHOTOS["chelsea.png"].read_bytes()),
        ("notes.txt", b"not a picture\n"),
        ("../evil.jpg", make_image()),
        ("/etc/absolute.jpg", make_image()),
        ("more.zip", build(("inner.png", make_image("PNG")))),
        symlink("link.jpg", b"/etc/passwd"),
        (stored_name, make_image()),
        ("__MACOSX/trip/._grace_hopper.jpg", b"\x00\x05\x16\x07"),
    )

    response = start_archive(alice_api, data)

    assert response.status_code == 202, response.content
    body = response.json()
    # Entries refused from the table of contents are failed from the start.
    assert (body["status"], body["total"], body["failed"]) == ("queued", 8, 5)
    assert staged() == [f"imports/{Job.objects.get().options['token']}/archive.zip"]

    assert jobs.run(body["id"]) == JobStatus.DONE

    job = alice_api.get(f"{IMPORTS}{body['id']}/").json()
    assert (job["status"], job["done"], job["failed"]) == ("done", 3, 5)
    outcomes = {item["filename"]: (item["status"], item["error"] and item["error"]["code"]) for item in job["items"]}
    done_name = stored_name.rsplit("/", 1)[-1]
    assert outcomes == {
        "grace_hopper.jpg": ("done", None),
        "chelsea.png": ("done", None),
        done_name: ("done", None),
        "notes.txt": ("failed", "not_an_image"),
        "evil.jpg": ("failed", "unsafe_name"),
        "absolute.jpg": ("failed", "unsafe_name"),
        "more.zip": ("failed", "nested_archive"),
        "link.jpg": ("failed", "symlink"),
    }
    # In the archive's order (positions are its entries', directories skipped).
    assert [item["filename"] for item in job["items"]][:2] == ["grace_hopper.jpg", "chelsea.png"]
    history = set(Upload.objects.filter(user=alice).values_list("original_filename", flat=True))
    assert history == {"photo.jpg", "grace_hopper.jpg", "chelsea.png", done_name}
    assert inference_calls[-1:] == [3]  # the three pictures in one batch
    assert staged() == []
    assert stored_bytes(stored_name) == earlier


def test_an_archive_member_refused_only_when_read_fails_alone_with_its_code(alice_api, make_image):
    good, bad = make_image("PNG"), make_image("PNG", size=(200, 150))
    data = build(("good.png", good), ("bad.png", bad))
    # Damaged compressed data behind an intact table of contents.
    start = local_header(data, "bad.png") + 30 + len("bad.png") + 20
    data = data[:start] + bytes(40) + data[start + 40 :]
    job_id = start_archive(alice_api, data).json()["id"]

    assert jobs.run(job_id) == JobStatus.DONE

    items = {item.filename: item for item in JobItem.objects.filter(job_id=job_id)}
    assert items["good.png"].status == JobItemStatus.DONE
    assert (items["bad.png"].status, items["bad.png"].error_code) == (
        JobItemStatus.FAILED, "archive_member_unreadable",
    )
    assert staged() == []


def test_an_archive_gone_from_the_storage_fails_its_pending_items_not_the_worker(alice_api, make_image):
    job_id = start_archive(alice_api, build(("a.png", make_image("PNG")), ("b.txt", b"x"))).json()["id"]
    storage.delete(staged()[0])

    assert jobs.run(job_id) == JobStatus.DONE

    codes = dict(JobItem.objects.filter(job_id=job_id).values_list("filename", "error_code"))
    assert codes == {"a.png": "staged_file_missing", "b.txt": "not_an_image"}


def _too_many(settings) -> bytes:
    settings.RECOGNITION_IMPORT_MAX_FILES = 3
    return build(*[(f"{n}.png", image_bytes("PNG", seed=n)) for n in range(4)])


def _too_large_a_file(settings) -> bytes:
    data = build(("a.png", image_bytes("PNG", seed=1)))
    settings.RECOGNITION_IMPORT_MAX_ARCHIVE_BYTES = len(data) - 1
    return data


def _too_large_unpacked(settings) -> bytes:
    settings.RECOGNITION_IMPORT_MAX_UNCOMPRESSED_BYTES = 1000
    return build(("a.png", image_bytes("PNG", seed=1)))


def _encrypted(settings) -> bytes:
    data = build(("a.png", image_bytes("PNG", seed=1)), ("b.jpg", image_bytes(seed=2)))
    return with_flag(with_flag(data, "a.png", 0x1), "b.jpg", 0x1)


WHOLE_ARCHIVE_REFUSED = {
    # case: (the archive, given the settings fixture; status; code)
    "a zip bomb": (lambda settings: _bomb(), 400, "archive_bomb"),
    "too many entries": (_too_many, 400, "archive_too_many_entries"),
    "truncated": (lambda settings: THREE[: len(THREE) // 2], 400, "archive_unreadable"),
    "not a zip at all": (lambda settings: image_bytes(), 400, "archive_unreadable"),
    "password-protected": (_encrypted, 400, "archive_encrypted"),
    "the archive file too large": (_too_large_a_file, 413, "import_too_large"),
    "too large once unpacked": (_too_large_unpacked, 413, "import_too_large"),
}


@pytest.mark.parametrize("case", list(WHOLE_ARCHIVE_REFUSED))
def test_an_archive_refused_whole_records_and_stages_nothing(alice_api, settings, case):
    make, status, code = WHOLE_ARCHIVE_REFUSED[case]

    response = start_archive(alice_api, make(settings))

    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert error["code"] == code and error["message"].strip()
    assert_nothing_recorded_or_staged()


def test_an_archive_over_the_days_allowance_is_refused_up_front_naming_what_remains(
    alice_api, make_image, settings
):
    settings.RECOGNITION_IMPORT_RATE = 5
    assert start(alice_api, [("a.jpg", make_image()), ("b.jpg", make_image())]).status_code == 202
    staged_before = staged()
    # Four entries count four, the text file included, as it would among `files`.
    data = build(*[(f"{n}.jpg", make_image()) for n in range(3)], ("notes.txt", b"x"))

    response = start_archive(alice_api, data)

    assert response.status_code == 429
    error = response.json()["error"]
    assert error["code"] == "import_allowance_exceeded"
    assert "has 4 pictures but only 3 of your 5" in error["message"]
    assert Job.objects.count() == 1 and staged() == staged_before


def test_an_archive_with_files_or_two_archives_is_a_400_and_nothing_is_recorded(alice_api, make_image):
    data = build(("a.png", make_image("PNG")))
    both = {"archive": as_upload(data, "a.zip", "application/zip"), "files": [as_upload(make_image())]}
    two = {"archive": [as_upload(data, "a.zip", "application/zip"), as_upload(data, "b.zip", "application/zip")]}

    answers = [alice_api.post(IMPORTS, payload, format="multipart") for payload in (both, two)]

    assert [(a.status_code, a.json()["error"]["code"]) for a in answers] == [
        (400, "archive_with_files"), (400, "one_archive_only"),
    ]
    assert "not both" in answers[0].json()["error"]["message"]
    assert_nothing_recorded_or_staged()


def test_an_archive_import_rerun_after_a_crash_reads_on_from_the_archive_and_redoes_nothing(
    alice, alice_api, make_image, inference_calls, settings, monkeypatch
):
    settings.RECOGNITION_MAX_BATCH = 2
    data = build(*[(f"p{n}.png", make_image("PNG")) for n in range(5)], ("notes.txt", b"x"))
    job_id = start_archive(alice_api, data).json()["id"]
    run_killed_after_the_first_batch(job_id, monkeypatch)
    job = Job.objects.get(pk=job_id)
    assert (job.status, job.done, job.failed) == (JobStatus.RUNNING, 2, 1)
    assert len(staged()) == 1  # a crash is not an end: the archive stays for the rerun
    Job.objects.filter(pk=job_id).update(claimed_at=None)  # as the claim goes stale
    inference_calls.clear()

    assert jobs.run(job_id) == JobStatus.DONE
    job.refresh_from_db()
    assert (job.done, job.failed, job.total) == (5, 1, 6)
    assert inference_calls == [2, 1]  # only the three pictures left
    assert sorted(Upload.objects.filter(user=alice).values_list("original_filename", flat=True)) == [
        f"p{n}.png" for n in range(5)
    ]
    assert staged() == []


def test_an_archive_django_kept_on_disk_while_uploading_is_staged_and_imported_from_there(
    alice, alice_api, make_image, settings
):
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 0  # every upload a temporary file, as large ones are
    pictures = [make_image(), make_image("PNG")]
    data = build(("a.jpg", pictures[0]), ("b.png", pictures[1]))
    job_id = start_archive(alice_api, data).json()["id"]
    assert stored_bytes(staged()[0]) == data

    assert jobs.run(job_id) == JobStatus.DONE

    assert Job.objects.get(pk=job_id).done == 2
    assert Upload.objects.filter(user=alice).count() == 2
