"""A new active model classifies known images afresh, and keeps the old results."""

from __future__ import annotations

import pytest

from recognition import active_model
from recognition.models import Classification
from recognition.services import upload_classify
from tests.web_fixtures import as_upload, media_files

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_models(two_models_dir, settings, served_from_the_active_row):
    models_dir, first, second = two_models_dir
    settings.RECOGNITION_MODELS_DIR = models_dir
    return first, second


def test_a_new_model_version_classifies_a_known_image_again_and_keeps_the_old_result(
    alice, bob, make_image, two_models, inference_calls
):
    first, second = two_models
    active_model.activate(first)
    data = make_image()
    before = upload_classify(user=alice, file=as_upload(data))
    bobs_before = upload_classify(user=bob, file=as_upload(data))

    active_model.activate(second)
    after = upload_classify(user=alice, file=as_upload(data))

    old, new = before.upload.classification, after.upload.classification
    assert after.duplicate is True
    assert after.upload.pk == before.upload.pk
    assert new.pk != old.pk
    assert new.model_version == second.rsplit("-", 1)[1]
    assert old.model_version == first.rsplit("-", 1)[1]
    assert Classification.objects.filter(pk=old.pk).exists()
    assert Classification.objects.filter(stored_image=new.stored_image).count() == 2
    # Bob did not upload again, yet his upload shows the active model's result now that
    # it exists (README, "Which result an upload shows"); the old one stays stored.
    bobs_before.upload.refresh_from_db()
    assert bobs_before.upload.classification_id == new.pk
    assert len(media_files()) == 1
    assert inference_calls == [1, 1]  # Alice's first upload, then the new model's


def test_the_second_upload_under_the_new_model_reuses_its_classification(
    alice, bob, make_image, two_models
):
    first, second = two_models
    active_model.activate(second)
    data = make_image()
    alices = upload_classify(user=alice, file=as_upload(data))

    bobs = upload_classify(user=bob, file=as_upload(data))

    assert bobs.upload.classification == alices.upload.classification
    assert Classification.objects.count() == 1
