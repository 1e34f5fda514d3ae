"""The admin's lists show values as the rest of the site does: durations in ms with one
decimal, confidences in percent, hashes shortened, dates compact, long names cut."""

from __future__ import annotations

import pytest
from django.template.defaultfilters import filesizeformat
from django.utils.timezone import localtime

from recognition.models import Classification, StoredImage, Upload
from recognition.services import upload_classify
from tests.web_fixtures import as_upload

pytestmark = pytest.mark.django_db

LONG_FILENAME = "IMG_20260101_120000_" + "0123456789abcdef" * 6 + ".jpg"


@pytest.fixture
def upload(alice, make_image) -> Upload:
    made = upload_classify(user=alice, file=as_upload(make_image(), LONG_FILENAME)).upload
    Classification.objects.filter(pk=made.classification_id).update(
        inference_ms=9.875548000309, top_score=0.87345
    )
    return Upload.objects.select_related("classification", "stored_image").get(pk=made.pk)


def test_the_classification_list_shows_inference_time_in_milliseconds(superuser_client, upload):
    html = superuser_client.get("/admin/recognition/classification/").content.decode()

    assert "9.9 ms" in html
    assert "9.8755" not in html
    assert "87.3%" in html


def test_a_classification_page_shows_inference_time_and_confidence_like_the_list(
    superuser_client, upload
):
    url = f"/admin/recognition/classification/{upload.classification_id}/change/"

    html = superuser_client.get(url).content.decode()

    assert "9.9 ms" in html
    assert "87.3%" in html
    assert "9.8755" not in html


def test_the_classification_list_shows_the_model_name_and_version_together(
    superuser_client, upload
):
    classification = upload.classification

    html = superuser_client.get("/admin/recognition/classification/").content.decode()

    assert f"{classification.model_name} {classification.model_version}" in html


def test_the_stored_image_list_shortens_the_hash_and_keeps_it_whole_in_the_tooltip(
    superuser_client, upload
):
    stored: StoredImage = upload.stored_image

    html = superuser_client.get("/admin/recognition/storedimage/").content.decode()

    assert f'title="{stored.sha256}">{stored.sha256[:12]}…</code>' in html
    assert f">{stored.sha256}<" not in html  # never spelt out in a cell
    assert f"<td class=\"field-file_size\">{filesizeformat(stored.byte_size)}</td>" in html


def test_the_upload_list_cuts_a_long_file_name_and_keeps_it_whole_in_the_tooltip(
    superuser_client, upload
):
    html = superuser_client.get("/admin/recognition/upload/").content.decode()

    assert f'title="{LONG_FILENAME}">{LONG_FILENAME[:39]}…</span>' in html


def test_the_lists_show_dates_in_the_compact_form(superuser_client, upload):
    html = superuser_client.get("/admin/recognition/upload/").content.decode()

    assert f"{localtime(upload.last_uploaded_at):%Y-%m-%d %H:%M}</time>" in html


def test_the_admin_lists_load_the_admin_stylesheet(superuser_client, upload):
    for url in (
        "/admin/recognition/storedimage/",
        "/admin/recognition/classification/",
        "/admin/recognition/upload/",
    ):
        assert "recognition/admin.css" in superuser_client.get(url).content.decode()
