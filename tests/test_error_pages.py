"""The error pages a person may meet are friendly, styled and point somewhere useful."""

from __future__ import annotations

import pytest
from django.test import Client

from recognition.services import upload_classify
from tests.web_fixtures import PASSWORD, as_upload

pytestmark = pytest.mark.django_db

STYLESHEET = '<link rel="stylesheet" href="/static/recognition/site.css">'


def test_a_form_sent_without_its_csrf_token_gets_a_page_that_says_to_reload(alice):
    client = Client(enforce_csrf_checks=True)

    response = client.post("/accounts/login/", {"username": "alice", "password": PASSWORD})

    assert response.status_code == 403
    page = response.content.decode()
    assert "Please try again" in page
    assert "reload the page" in page
    assert STYLESHEET in page


def test_an_oversized_page_upload_gets_a_styled_page(alice_client, settings):
    settings.RECOGNITION_MAX_UPLOAD_BYTES = 1000

    response = alice_client.post("/", b"x" * 200_000, content_type="application/octet-stream")

    assert response.status_code == 413
    assert STYLESHEET in response.content.decode()


def test_an_unexpected_error_gets_the_friendly_500_page(alice, monkeypatch):
    from recognition.views import pages

    def broken(**kwargs):
        raise RuntimeError("the database fell over")

    monkeypatch.setattr(pages, "upload_list_for_user", broken)
    client = Client(raise_request_exception=False)
    client.force_login(alice)

    response = client.get("/history/")

    assert response.status_code == 500
    page = response.content.decode()
    assert "Something went wrong" in page
    assert "the database fell over" not in page
    assert STYLESHEET in page


def test_someone_elses_upload_gets_the_not_found_page_with_ways_on(alice_client, bob, make_image):
    bobs = upload_classify(user=bob, file=as_upload(make_image())).upload

    response = alice_client.get(f"/uploads/{bobs.pk}/")

    assert response.status_code == 404
    page = response.content.decode()
    assert "it is not yours to see" in page
    assert 'href="/history/"' in page and 'href="/"' in page
