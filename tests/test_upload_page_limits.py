"""The upload page hands the browser the server's own limits, so files are checked
before they are sent with exactly the rules the server applies."""

from __future__ import annotations

import html
import re

import pytest

from recognition.engine.images import ACCEPTED_CONTENT_TYPES, ACCEPTED_EXTENSIONS
from recognition.errors import too_large_message

pytestmark = pytest.mark.django_db


def data_attribute(page: str, name: str) -> str:
    match = re.search(rf'data-{name}="([^"]*)"', page)
    assert match, f"data-{name} is missing"
    return html.unescape(match.group(1))


def test_the_upload_page_carries_the_servers_size_limit_and_its_message(alice_client, settings):
    settings.RECOGNITION_MAX_UPLOAD_BYTES = 123_456

    page = alice_client.get("/").content.decode()

    assert data_attribute(page, "max-bytes") == "123456"
    assert data_attribute(page, "too-large-message") == too_large_message(123_456)
    assert "up to 120.6\xa0KB each" in page


def test_the_upload_page_carries_the_accepted_types_and_extensions(alice_client):
    page = alice_client.get("/").content.decode()

    assert data_attribute(page, "accept-types").split(",") == list(ACCEPTED_CONTENT_TYPES)
    assert data_attribute(page, "accept-extensions").split(",") == list(ACCEPTED_EXTENSIONS)
    assert 'aria-describedby="upload-hint"' in page
