"""Uncertain classifications: the real model is sure of a clear photo and unsure of noise;
the thresholds come from the settings and apply to stored rows as they are read; the API,
the history page, the result and detail pages and the admin all show and filter them."""

from __future__ import annotations

import importlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import skimage
from django.apps import apps
from django.urls import reverse
from PIL import Image

from recognition.models import Classification, Upload
from recognition.selectors import upload_list_for_user
from recognition.services import upload_classify
from tests.helpers import REPO, noise_picture
from tests.web_fixtures import as_upload

pytestmark = pytest.mark.django_db

API = "/api/v1/classifications/"
EXPORT = "/api/v1/classifications/export/"
BADGE = 'class="badge badge-uncertain"'

# bench/uncertainty.py: EfficientNet-Lite0 gives coffee.png "espresso" at 0.83, 0.75 ahead
# of the second; this uniform noise "kite" at 0.17 (all noise it saw stayed below 0.18).
COFFEE = Path(skimage.data_dir) / "coffee.png"


def jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


@pytest.fixture
def lite0(settings, lite0_models_dir):
    """The real EfficientNet-Lite0 with its ImageNet weights, served instead of the
    session's random-weights model."""
    settings.RECOGNITION_MODELS_DIR, settings.RECOGNITION_MODEL = lite0_models_dir
    return settings


@pytest.fixture
def defaults(settings):
    settings.RECOGNITION_UNCERTAIN_BELOW = 0.2
    settings.RECOGNITION_UNCERTAIN_MARGIN = 0.005
    return settings


def uploaded(user, data: bytes, name: str, top: float | None = None, margin: float | None = None) -> Upload:
    """An upload through the service; with `top` and `margin`, its classification's
    scores set to those (the random-weights model is unsure of everything)."""
    upload = upload_classify(user=user, file=as_upload(data, name)).upload
    if top is not None:
        Classification.objects.filter(pk=upload.classification_id).update(
            top_score=top, margin=margin
        )
    return Upload.objects.select_related("classification").get(pk=upload.pk)


@pytest.fixture
def sure_and_unsure(alice, make_image, defaults) -> tuple[Upload, Upload]:
    sure = uploaded(alice, make_image(seed=1), "confident.jpg", top=0.9, margin=0.8)
    unsure = uploaded(alice, make_image(seed=2), "doubtful.jpg", top=0.1, margin=0.05)
    return sure, unsure


def test_a_clear_real_photo_is_not_uncertain_and_its_margin_is_the_gap_to_the_second(
    alice, alice_api, lite0, defaults
):
    upload = uploaded(alice, jpeg(Image.open(COFFEE)), "coffee.jpg")
    first, second = upload.classification.predictions.order_by("rank")[:2]

    assert upload.classification.top_label == "espresso"
    assert upload.classification.margin == pytest.approx(first.score - second.score)
    assert upload.classification.uncertain is False
    assert alice_api.get(f"{API}{upload.pk}/").json()["uncertain"] is False


def test_uniform_noise_is_uncertain(alice, alice_api, lite0, defaults):
    upload = uploaded(alice, jpeg(noise_picture(0, (320, 240))), "noise.jpg")

    assert upload.classification.top_score < defaults.RECOGNITION_UNCERTAIN_BELOW
    assert upload.classification.uncertain is True
    assert alice_api.get(f"{API}{upload.pk}/").json()["uncertain"] is True


def test_thresholds_from_the_settings_change_the_answer_without_touching_the_row(
    alice, make_image, settings, defaults
):
    upload = uploaded(alice, make_image(), "photo.jpg", top=0.6, margin=0.3)
    stored = Classification.objects.values().get(pk=upload.classification_id)

    def uncertain() -> bool:
        return Classification.objects.get(pk=upload.classification_id).uncertain

    def listed_as_uncertain() -> bool:
        return list(upload_list_for_user(user=alice, uncertain=True)) == [upload]

    assert (uncertain(), listed_as_uncertain()) == (False, False)
    settings.RECOGNITION_UNCERTAIN_BELOW = 0.7
    assert (uncertain(), listed_as_uncertain()) == (True, True)
    settings.RECOGNITION_UNCERTAIN_BELOW = 0.2
    settings.RECOGNITION_UNCERTAIN_MARGIN = 0.31
    assert (uncertain(), listed_as_uncertain()) == (True, True)
    settings.RECOGNITION_UNCERTAIN_MARGIN = 0.3  # a margin equal to the threshold passes
    assert (uncertain(), listed_as_uncertain()) == (False, False)
    assert Classification.objects.values().get(pk=upload.classification_id) == stored


def test_the_api_lists_only_uncertain_or_only_confident_classifications(alice_api, sure_and_unsure):
    sure, unsure = sure_and_unsure

    def listed(**params) -> list[tuple[str, bool]]:
        response = alice_api.get(API, params)
        assert response.status_code == 200
        return [(row["filename"], row["uncertain"]) for row in response.json()["results"]]

    assert listed(uncertain="true") == [("doubtful.jpg", True)]
    assert listed(uncertain="false") == [("confident.jpg", False)]
    assert listed() == listed(uncertain="") == [("doubtful.jpg", True), ("confident.jpg", False)]


@pytest.mark.parametrize("value", ["maybe", "1", "True", "yes"])
def test_the_api_refuses_an_uncertain_filter_other_than_true_or_false(alice_api, sure_and_unsure, value):
    response = alice_api.get(API, {"uncertain": value})

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    assert error["fields"]["uncertain"] == [f'Must be true or false, not "{value}".']


def test_the_history_page_filters_by_certainty_shows_the_badge_and_exports_the_same(
    alice_client, sure_and_unsure
):
    everything = alice_client.get(reverse("history")).content.decode()
    only_uncertain = alice_client.get(reverse("history"), {"uncertain": "true"}).content.decode()
    only_confident = alice_client.get(reverse("history"), {"uncertain": "false"}).content.decode()
    export = alice_client.get(EXPORT, {"uncertain": "true", "format": "jsonl"})

    assert '<option value="true">Only uncertain</option>' in everything
    assert everything.count(BADGE) == 1
    assert "doubtful.jpg" in only_uncertain and "confident.jpg ·" not in only_uncertain
    assert only_uncertain.count(BADGE) == 1
    assert '<option value="true" selected>Only uncertain</option>' in only_uncertain
    assert "uncertain=true&amp;format=csv" in only_uncertain  # the export links carry it
    assert "confident.jpg" in only_confident and "doubtful.jpg" not in only_confident
    assert BADGE not in only_confident
    exported = b"".join(export.streaming_content).decode().splitlines()
    assert [json.loads(line)["filename"] for line in exported] == ["doubtful.jpg"]


def test_an_invalid_certainty_filter_on_the_history_page_is_shown_and_ignored(
    alice_client, sure_and_unsure
):
    html = alice_client.get(reverse("history"), {"uncertain": "maybe"}).content.decode()

    assert "Must be true or false, not “maybe”." in html
    assert "confident.jpg ·" in html and "doubtful.jpg ·" in html


def test_the_detail_page_shows_the_badge_only_for_an_uncertain_classification(
    alice_client, sure_and_unsure
):
    sure, unsure = sure_and_unsure

    unsure_html = alice_client.get(reverse("upload-detail", args=[unsure.pk])).content.decode()
    sure_html = alice_client.get(reverse("upload-detail", args=[sure.pk])).content.decode()

    assert unsure_html.count(BADGE) == 1
    assert 'title="The model is unsure of this picture: its top score is below 20.0%' in unsure_html
    assert BADGE not in sure_html


def test_the_upload_page_result_carries_the_badge_when_the_model_is_unsure(
    alice_client, make_image, defaults
):
    # The random-weights model spreads its probability thin: every picture is uncertain.
    html = alice_client.post("/", {"images": as_upload(make_image(), "new.jpg")}).content.decode()

    assert html.count(BADGE) == 1


def test_the_admin_filters_classifications_and_uploads_by_certainty(
    superuser_client, sure_and_unsure
):
    sure, unsure = sure_and_unsure

    def listed(url: str, value: str) -> set[str]:
        response = superuser_client.get(url, {"uncertain": value})
        assert response.status_code == 200
        return {row.pk for row in response.context["cl"].result_list}

    classifications = "/admin/recognition/classification/"
    uploads = "/admin/recognition/upload/"
    assert listed(classifications, "true") == {unsure.classification_id}
    assert listed(classifications, "false") == {sure.classification_id}
    assert listed(uploads, "true") == {unsure.pk}
    assert listed(uploads, "false") == {sure.pk}
    assert "Uncertain" in superuser_client.get(uploads).content.decode()


def test_the_migration_backfills_margins_from_the_stored_first_and_second_predictions(
    alice, make_image
):
    backfill = importlib.import_module(
        "recognition.migrations.0005_classification_margin"
    ).backfill_margins
    two = uploaded(alice, make_image(seed=1), "two.jpg").classification
    one = uploaded(alice, make_image(seed=2), "one.jpg").classification
    one.predictions.filter(rank__gte=2).delete()  # as a one-category model leaves it
    first, second = two.predictions.order_by("rank")[:2]
    Classification.objects.update(margin=0.0)

    backfill(apps, None)

    assert Classification.objects.get(pk=two.pk).margin == pytest.approx(first.score - second.score)
    assert Classification.objects.get(pk=one.pk).margin == one.top_score


@pytest.mark.parametrize("value", ["high", "1.5", "-0.1", "nan"])
@pytest.mark.parametrize("name", ["RECOGNITION_UNCERTAIN_BELOW", "RECOGNITION_UNCERTAIN_MARGIN"])
def test_a_threshold_that_is_not_a_probability_stops_start_up(tmp_path, name, value):
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=REPO,
        env={**os.environ, name: value, "RECOGNITION_DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert f"{name} must be a number from 0 to 1, not {value!r}" in result.stderr
