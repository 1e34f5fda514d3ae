"""The admin's lists stay readable at 1280 px: the results table ends before the filter
column begins, with the widest values the service stores in it."""

from __future__ import annotations

import mimetypes

import pytest
from playwright.sync_api import expect

from recognition.configured_classifier import get_classifier
from recognition.models import Classification, Upload
from recognition.services import upload_classify
from tests.web_fixtures import as_upload

from .conftest import DESKTOP, SCREENSHOTS

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# A camera's file name has no space to break at; 120 characters of it.
LONG_FILENAME = "IMG_20260101_120000_" + "0123456789abcdef" * 6 + ".jpg"
LISTS = ["storedimage", "classification", "upload"]


@pytest.fixture
def widest_records(alice, photos, make_image):
    """Uploads whose shown values are the longest the service writes: the model's longest
    label, an int8 model version, a long file name without spaces."""
    for path in photos.values():
        content_type = mimetypes.guess_type(path.name)[0]
        upload_classify(user=alice, file=as_upload(path.read_bytes(), path.name, content_type))
    upload_classify(user=alice, file=as_upload(make_image(size=(320, 240)), LONG_FILENAME))
    longest_label = max(get_classifier().manifest().categories, key=len)
    version = Classification.objects.first().model_version
    Classification.objects.update(top_label=longest_label, model_version=f"{version}-int8")
    assert Upload.objects.filter(original_filename=LONG_FILENAME).exists()


@pytest.mark.parametrize("model", LISTS)
def test_an_admin_list_ends_before_its_filter_column_at_desktop_width(
    new_context, superuser, widest_records, model
):
    page = new_context(user=superuser).new_page()
    page.set_viewport_size(DESKTOP)

    page.goto(f"/admin/recognition/{model}/")

    table = page.locator("#result_list")
    filters = page.locator("#changelist-filter")
    expect(table.locator("tbody tr").first).to_be_visible()
    expect(filters).to_be_visible()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"admin-{model}-desktop.png", full_page=True)
    table_box, filters_box = table.bounding_box(), filters.bounding_box()
    results_box = page.locator("#changelist-form .results").bounding_box()
    assert table_box["x"] + table_box["width"] <= filters_box["x"]
    # Nor wider than its scrolling box: all of it is in view without scrolling sideways.
    assert table_box["width"] <= results_box["width"] + 1
