"""The active model is a database row: activating records who, when and what was active
before; rollback goes back to it; only prepared builds may be activated."""

from __future__ import annotations

import pytest

from recognition import active_model
from recognition.models import ActiveModel

pytestmark = pytest.mark.django_db


@pytest.fixture
def models(two_models_dir, settings):
    models_dir, first, second = two_models_dir
    settings.RECOGNITION_MODELS_DIR = models_dir
    return first, second


def test_activating_records_the_key_who_did_it_and_what_was_active_before(models, alice):
    first, second = models

    active_model.activate(first)
    row = active_model.activate(second, user=alice)

    assert active_model.current_key() == second
    assert (row.key, row.previous_key, row.activated_by) == (second, first, alice)
    assert [r.key for r in ActiveModel.objects.all()] == [second, first]  # newest first


def test_activating_the_active_model_again_records_nothing(models):
    first, _ = models
    active_model.activate(first)

    active_model.activate(first)

    assert ActiveModel.objects.count() == 1


def test_rollback_activates_the_previous_model_again_and_records_it(models, alice):
    first, second = models
    active_model.activate(first)
    active_model.activate(second)

    row = active_model.rollback(user=alice)

    assert active_model.current_key() == first
    assert (row.previous_key, row.activated_by) == (second, alice)
    assert ActiveModel.objects.count() == 3  # the history keeps every activation


def test_rollback_without_a_previous_model_is_refused(models):
    active_model.activate(models[0])

    with pytest.raises(active_model.ActivationRefused, match="nothing to roll back to"):
        active_model.rollback()
    assert ActiveModel.objects.count() == 1


def test_a_key_that_is_not_prepared_is_refused_naming_the_prepared_ones(models):
    first, second = models

    with pytest.raises(active_model.ActivationRefused) as refused:
        active_model.activate("resnet18-000000000000")

    message = str(refused.value)
    assert "'resnet18-000000000000' is not a prepared model" in message
    assert first in message and second in message
    assert "\n" not in message
    assert not ActiveModel.objects.exists()
