"""The Import page and an import's own page, server-rendered (the no-JavaScript path):
starting an import from a form with real photos, its progress and each file's outcome
once the worker's own job function has run it in this process, cancelling by the form,
readable refusals that write nothing, and whose imports are whose."""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import matplotlib
import pytest
import skimage
from django.test import Client

from recognition import jobs, storage
from recognition.models import Job, JobItem, JobStatus, Upload
from tests.web_fixtures import as_upload

pytestmark = pytest.mark.django_db

PHOTOS = [
    Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg",
    *(Path(skimage.data_dir) / name for name in ("chelsea.png", "coffee.png", "rocket.jpg", "astronaut.png")),
]
NOTES = ("notes.txt", b"a shopping list, not a picture")
REFRESH = '<noscript><meta http-equiv="refresh" content="2"></noscript>'


def photo_files(paths: list[Path] = PHOTOS) -> list:
    kinds = {".jpg": "image/jpeg", ".png": "image/png"}
    return [as_upload(path.read_bytes(), path.name, kinds[path.suffix]) for path in paths]


def start(client: Client, *, folder=(), files=(), archive=None):
    fields = {"folder": list(folder), "files": list(files)}
    if archive is not None:
        fields["archive"] = archive
    return client.post("/imports/", fields)


def zip_of(entries: list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries:
            archive.writestr(name, data)
    return buffer.getvalue()


def started_job(client: Client, **chosen) -> Job:
    response = start(client, **chosen)
    assert response.status_code == 302, response.content.decode()
    job_id = int(re.fullmatch(r"/imports/(\d+)/", response["Location"])[1])
    return Job.objects.get(pk=job_id)


def html(response) -> str:
    assert response.status_code == 200
    return response.content.decode()


def bar_value(page: str) -> int:
    return int(re.search(r'role="progressbar"[^>]*aria-valuenow="(\d+)"', page, re.S)[1])


def nothing_was_written() -> bool:
    return not Job.objects.exists() and not JobItem.objects.exists() and not list(storage.list_files("imports"))


def test_the_import_page_offers_a_folder_and_many_pictures_in_a_plain_form(alice_client):
    page = html(alice_client.get("/imports/"))

    assert re.search(r'<form id="import-form"[^>]*method="post"[^>]*enctype="multipart/form-data"', page)
    folder = re.search(r'<input type="file" name="folder"[^>]*>', page)[0]
    files = re.search(r'<input type="file" name="files"[^>]*>', page)[0]
    assert " webkitdirectory " in folder and " multiple " in folder
    assert " multiple " in files and "webkitdirectory" not in files
    archive = re.search(r'<input type="file" name="archive"[^>]*>', page)[0]
    assert 'accept=".zip,application/zip"' in archive and "multiple" not in archive
    assert 'name="csrfmiddlewaretoken"' in page
    assert '<a href="/imports/" aria-current="page">Import</a>' in page
    assert "You have not imported anything yet." in page


def test_the_nav_offers_the_import_page_on_every_signed_in_page(alice_client):
    assert '<a href="/imports/">Import</a>' in html(alice_client.get("/history/"))


@pytest.mark.parametrize("path", ["/imports/", "/imports/1/"])
def test_the_import_pages_ask_an_anonymous_visitor_to_log_in(path):
    response = Client().get(path)

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


def test_a_folder_and_a_text_file_from_the_form_start_one_import_and_lead_to_its_page(
    alice, alice_client
):
    job = started_job(alice_client, folder=photo_files(), files=[as_upload(NOTES[1], NOTES[0], "text/plain")])

    assert (job.owner, job.status, job.total) == (alice, JobStatus.QUEUED, 6)
    names = list(job.items.order_by("position").values_list("filename", flat=True))
    assert names == [path.name for path in PHOTOS] + ["notes.txt"]
    page = html(alice_client.get(f"/imports/{job.pk}/"))
    assert bar_value(page) == 0
    assert page.count("Waiting…") == 6
    assert "Queued:" in page


def test_the_job_page_shows_the_counts_and_every_files_outcome_once_it_has_run(alice, alice_client):
    job = started_job(alice_client, files=[*photo_files(), as_upload(NOTES[1], NOTES[0], "text/plain")])

    assert jobs.run(job.pk) == JobStatus.DONE

    page = html(alice_client.get(f"/imports/{job.pk}/"))
    assert bar_value(page) == 100
    assert re.search(r'id="import-done">5</span> of <span id="import-total">6<', page)
    assert 'id="import-failed">1<' in page
    assert re.search(r'id="import-rate">\d+\.\d pictures/s<', page)
    assert 'id="import-time-left">none<' in page
    assert "Finished." in page
    assert "Waiting…" not in page
    uploads = Upload.objects.filter(user=alice).select_related("classification")
    assert uploads.count() == 5
    for upload in uploads:
        # The label and confidence, linking to the picture's page in the history.
        link = re.search(rf'<a class="import-item-outcome" href="/uploads/{upload.pk}/">(.*?)</a>', page, re.S)
        assert link, upload.original_filename
        assert upload.classification.top_label in link[1]
        assert re.search(r'<span class="top-score">\d{1,3}\.\d%</span>', link[1])
    refused = re.search(r'<li class="import-item import-item-failed"[^>]*>(.*?)</li>', page, re.S)[1]
    assert "notes.txt" in refused
    assert "not an image" in refused.lower() or "supported format" in refused.lower(), refused


def test_a_page_of_an_unfinished_import_refreshes_itself_without_javascript_and_a_finished_one_does_not(
    alice_client,
):
    job = started_job(alice_client, files=photo_files(PHOTOS[:2]))

    running = html(alice_client.get(f"/imports/{job.pk}/"))
    jobs.run(job.pk)
    finished = html(alice_client.get(f"/imports/{job.pk}/"))

    head = running.split("</head>")[0]
    assert REFRESH in head
    assert 'id="import-cancel-form"' in running
    assert REFRESH not in finished
    assert 'id="import-cancel-form"' not in finished


class WorkerKilled(BaseException):
    """What a SIGKILL looks like from inside: the job is left running halfway."""


def test_halfway_the_page_shows_what_the_api_says_and_the_rest_waiting(
    alice_client, settings, monkeypatch
):
    settings.RECOGNITION_MAX_BATCH = 2
    job = started_job(alice_client, files=photo_files())
    asks = jobs.JobRun.should_stop

    def dies_before_the_second_batch(self):
        if self.job.done >= 2:  # the first batch is recorded
            raise WorkerKilled()
        return asks(self)

    monkeypatch.setattr(jobs.JobRun, "should_stop", dies_before_the_second_batch)
    with pytest.raises(WorkerKilled):
        jobs.run(job.pk)

    page = html(alice_client.get(f"/imports/{job.pk}/"))
    api = alice_client.get(f"/api/v1/imports/{job.pk}/").json()
    assert (api["status"], api["done"], api["total"]) == ("running", 2, 5)
    assert bar_value(page) == 40 == 100 * (api["done"] + api["failed"]) // api["total"]
    assert re.search(r'id="import-done">2</span> of <span id="import-total">5<', page)
    # The rate goes on changing while the import runs: the API's and the page's differ.
    assert api["rate"] > 0 and re.search(r'id="import-rate">\d+\.\d pictures/s<', page)
    assert re.search(r'id="import-time-left">about \d+ (s|min)<', page)
    assert page.count('<a class="import-item-outcome"') == 2
    assert page.count("Waiting…") == 3
    assert "Running." in page and REFRESH in page


def test_cancel_on_the_page_ends_a_queued_import_and_it_never_runs(alice_client):
    job = started_job(alice_client, files=photo_files(PHOTOS[:3]))

    response = alice_client.post(f"/imports/{job.pk}/cancel/")

    assert response.status_code == 302 and response["Location"] == f"/imports/{job.pk}/"
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
    assert jobs.run(job.pk) == "nothing to do"
    page = html(alice_client.get(f"/imports/{job.pk}/"))
    assert "Cancelled:" in page
    assert page.count("Not imported: the import was cancelled.") == 3
    assert REFRESH not in page and 'id="import-cancel-form"' not in page
    assert not Upload.objects.exists()


def test_cancel_takes_a_post_only(alice_client):
    job = started_job(alice_client, files=photo_files(PHOTOS[:1]))

    assert alice_client.get(f"/imports/{job.pk}/cancel/").status_code == 405
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED


def test_nothing_chosen_is_refused_on_the_page_and_nothing_is_written(alice_client):
    response = start(alice_client)

    assert response.status_code == 400
    assert "Choose a folder, some pictures or a ZIP archive to import." in response.content.decode()
    assert nothing_was_written()


def test_a_zip_archive_from_the_form_is_imported_entry_by_entry(alice, alice_client):
    entries = [(f"holiday/{path.name}", path.read_bytes()) for path in PHOTOS] + [NOTES]
    job = started_job(alice_client, archive=as_upload(zip_of(entries), "holiday.zip", "application/zip"))

    assert jobs.run(job.pk) == JobStatus.DONE

    page = html(alice_client.get(f"/imports/{job.pk}/"))
    assert bar_value(page) == 100
    assert re.search(r'id="import-done">5</span> of <span id="import-total">6<', page)
    assert page.count('<a class="import-item-outcome"') == 5
    assert Upload.objects.filter(user=alice).count() == 5
    assert page.count("import-item import-item-failed") == 1


def test_an_archive_and_pictures_together_are_refused_on_the_page_and_nothing_is_written(alice_client):
    archive = as_upload(zip_of([(PHOTOS[0].name, PHOTOS[0].read_bytes())]), "one.zip", "application/zip")

    response = start(alice_client, files=photo_files(PHOTOS[1:2]), archive=archive)

    assert response.status_code == 400
    assert "Choose either a ZIP archive or pictures, not both" in response.content.decode()
    assert nothing_was_written()


def test_a_file_that_is_not_a_zip_archive_is_refused_on_the_page_and_nothing_is_written(alice_client):
    response = start(alice_client, archive=as_upload(PHOTOS[0].read_bytes(), "photos.zip", "application/zip"))

    assert response.status_code == 400
    assert '<p class="error" role="alert">The file is not a readable ZIP archive' in response.content.decode()
    assert nothing_was_written()


def test_an_import_beyond_the_daily_allowance_is_refused_on_the_page_and_nothing_is_written(
    alice_client, settings
):
    settings.RECOGNITION_IMPORT_RATE = 2

    response = start(alice_client, files=photo_files(PHOTOS[:3]))

    assert response.status_code == 429
    page = response.content.decode()
    assert re.search(r'<p class="error" role="alert">This import has 3 pictures but only 2 of your 2 ', page)
    assert 'id="import-form"' in page  # the form again, to choose fewer
    assert nothing_was_written()


def test_an_import_over_the_size_cap_is_refused_on_the_page_and_nothing_is_written(alice_client, settings):
    # Just over: the files are counted and the form says so.
    settings.RECOGNITION_IMPORT_MAX_ARCHIVE_BYTES = sum(path.stat().st_size for path in PHOTOS[:2]) - 1

    response = start(alice_client, files=photo_files(PHOTOS[:2]))

    assert response.status_code == 413
    assert re.search(r'<p class="error" role="alert">This import is too large: at most ', response.content.decode())
    assert nothing_was_written()


def test_an_import_far_over_the_size_cap_is_refused_before_it_is_read_and_leads_back_to_imports(
    alice_client, settings
):
    # The request's declared length alone refuses it (the middleware), before the body
    # is read: a page of its own, whose way back is the Import page.
    settings.RECOGNITION_IMPORT_MAX_ARCHIVE_BYTES = PHOTOS[0].stat().st_size

    response = start(alice_client, files=photo_files(PHOTOS[:2]))

    assert response.status_code == 413
    page = response.content.decode()
    assert "This import is too large: at most " in page
    assert '<a href="/imports/">Back to the import page</a>' in page
    assert nothing_was_written()


def test_another_users_import_is_not_found_and_cannot_be_cancelled(alice_client, bob_client):
    job = started_job(alice_client, files=photo_files(PHOTOS[:1]))

    page = bob_client.get(f"/imports/{job.pk}/")
    cancel = bob_client.post(f"/imports/{job.pk}/cancel/")

    assert (page.status_code, cancel.status_code) == (404, 404)
    assert "grace_hopper" not in page.content.decode()
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED


def test_the_import_page_lists_only_the_users_own_imports_newest_first(alice_client, bob_client):
    first = started_job(alice_client, files=photo_files(PHOTOS[:1]))
    jobs.run(first.pk)
    second = started_job(alice_client, files=photo_files(PHOTOS[1:3]))
    theirs = started_job(bob_client, files=photo_files(PHOTOS[3:4]))

    page = html(alice_client.get("/imports/"))

    links = re.findall(r'<a href="/imports/(\d+)/">Import of', page)
    assert links == [str(second.pk), str(first.pk)]
    assert str(theirs.pk) not in links
    assert "1 of 1 recognised" in page and "0 of 2 recognised" in page



def test_starting_or_cancelling_an_import_without_a_csrf_token_is_forbidden(alice, alice_client):
    job = started_job(alice_client, files=photo_files(PHOTOS[:1]))
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)

    start_response = start(client, files=photo_files(PHOTOS[1:2]))
    cancel_response = client.post(f"/imports/{job.pk}/cancel/")

    assert (start_response.status_code, cancel_response.status_code) == (403, 403)
    assert list(Job.objects.values_list("pk", "status")) == [(job.pk, JobStatus.QUEUED)]


@pytest.mark.parametrize("page", ["list", "job"])
def test_the_import_pages_load_their_script_from_this_server_and_run_none_inline(alice_client, page):
    job = started_job(alice_client, files=photo_files(PHOTOS[:1]))

    content = html(alice_client.get("/imports/" if page == "list" else f"/imports/{job.pk}/"))

    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", content) == []
    assert '<script src="/static/recognition/import.js" defer></script>' in content


def test_an_import_from_the_page_may_carry_more_than_one_upload_s_byte_limit(alice_client, settings):
    # Each photo is within the per-picture cap, together they are well over it: the page
    # is a bulk import and has the import's cap, like the API's, not the upload's.
    settings.RECOGNITION_MAX_UPLOAD_BYTES = max(path.stat().st_size for path in PHOTOS)

    job = started_job(alice_client, files=photo_files())

    assert job.total == len(PHOTOS)
    assert set(job.items.values_list("status", flat=True)) == {"pending"}
