"""/api/v1/models/active/ and /api/v1/health/, with a model and without one."""

from __future__ import annotations

import pytest
from django.db import DatabaseError
from rest_framework.test import APIClient

from recognition.configured_classifier import get_classifier

pytestmark = pytest.mark.django_db


def test_it_describes_the_active_model(alice_api):
    response = alice_api.get("/api/v1/models/active/")

    assert response.status_code == 200
    model = get_classifier().identity()
    assert response.json() == {
        "name": model.name,
        "version": model.version,
        "custom": model.custom,
        "num_categories": model.num_categories,
    }
    assert response.json()["num_categories"] == 1000


def test_without_a_model_it_answers_503_with_the_fix(alice_api, no_model):
    response = alice_api.get("/api/v1/models/active/")

    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "model_unavailable"
    assert "prepare_model" in error["message"]


def test_health_is_ok_with_a_model_and_a_database_and_needs_no_login():
    response = APIClient().get("/api/v1/health/")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "model_loaded": True, "database": True}


def test_health_is_503_without_a_model(no_model):
    response = APIClient().get("/api/v1/health/")

    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "model_loaded": False, "database": True}


def test_health_is_503_when_the_database_fails(monkeypatch):
    from recognition.api import system

    def broken_cursor():
        raise DatabaseError("connection refused")

    monkeypatch.setattr(system.connection, "cursor", broken_cursor)

    response = APIClient().get("/api/v1/health/")

    assert response.status_code == 503
    assert response.json()["database"] is False
    assert response.json()["model_loaded"] is True
