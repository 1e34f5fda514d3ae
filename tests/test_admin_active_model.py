"""The active-model admin: the activation history, read-only, and two ways to switch
every node's model, each recorded with the admin who did it."""

from __future__ import annotations

import pytest

from recognition import active_model
from recognition.models import ActiveModel

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/recognition/activemodel/"
ADD = CHANGELIST + "add/"


@pytest.fixture
def models(two_models_dir, settings):
    models_dir, first, second = two_models_dir
    settings.RECOGNITION_MODELS_DIR = models_dir
    return first, second


def test_the_history_lists_every_activation_and_cannot_be_edited_or_deleted(
    models, superuser_client
):
    first, second = models
    active_model.activate(first)
    row = active_model.activate(second)

    page = superuser_client.get(CHANGELIST).content.decode()
    change = superuser_client.get(f"{CHANGELIST}{row.pk}/change/")

    assert first in page and second in page
    assert change.status_code == 200 and 'name="_save"' not in change.content.decode()
    assert superuser_client.post(f"{CHANGELIST}{row.pk}/delete/", {"post": "yes"}).status_code == 403
    assert ActiveModel.objects.count() == 2


def test_adding_activates_a_prepared_model_recorded_with_the_admin(
    models, superuser, superuser_client
):
    first, second = models
    active_model.activate(first)

    response = superuser_client.post(ADD, {"key": second})

    assert response.status_code == 302
    row = active_model.current()
    assert (row.key, row.previous_key, row.activated_by) == (second, first, superuser)


def test_the_add_form_offers_the_prepared_models_and_refuses_any_other_key(
    models, superuser_client
):
    first, second = models

    form = superuser_client.get(ADD).content.decode()
    refused = superuser_client.post(ADD, {"key": "resnet18-000000000000"})

    assert f'value="{first}"' in form and f'value="{second}"' in form
    assert refused.status_code == 200 and "resnet18-000000000000" in refused.content.decode()
    assert not ActiveModel.objects.exists()


def test_the_action_activates_a_former_model_again_recorded_with_the_admin(
    models, superuser, superuser_client
):
    first, second = models
    former = active_model.activate(first)
    active_model.activate(second)

    superuser_client.post(
        CHANGELIST, {"action": "activate_again", "_selected_action": [former.pk]}
    )

    row = active_model.current()
    assert (row.key, row.previous_key, row.activated_by) == (first, second, superuser)


def test_ordinary_users_cannot_activate_a_model(models, alice_client):
    response = alice_client.post(ADD, {"key": models[1]})

    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert not ActiveModel.objects.exists()
