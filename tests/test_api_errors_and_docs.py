"""The API always answers in JSON, and documents itself offline."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


def test_an_unknown_api_url_is_a_json_404(alice_api):
    response = alice_api.get("/api/v1/nothing-here/")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_a_missing_upload_is_a_json_404(alice_api):
    response = alice_api.get("/api/v1/classifications/999999/")

    assert response.status_code == 404
    assert response.json()["error"] == {"code": "not_found", "message": "No such upload."}


def test_a_wrong_method_is_a_json_405(alice_api):
    response = alice_api.put("/api/v1/classifications/")

    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"
    assert "GET" in response["Allow"] and "POST" in response["Allow"]


def test_the_openapi_schema_describes_every_operation():
    response = APIClient().get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")

    assert response.status_code == 200
    schema = response.json()
    paths = schema["paths"]
    create = paths["/api/v1/classifications/"]["post"]
    assert "multipart/form-data" in create["requestBody"]["content"]
    assert {"201", "200", "400", "413", "415", "503"} <= set(create["responses"])
    assert "get" in paths["/api/v1/classifications/"]
    assert {"get", "delete"} <= set(paths["/api/v1/classifications/{upload_id}/"])
    assert "/api/v1/models/active/" in paths
    assert "/api/v1/health/" in paths


def test_the_docs_page_loads_everything_from_this_server():
    response = APIClient().get("/api/v1/docs/")

    assert response.status_code == 200
    html = response.content.decode()
    assert "swagger-ui" in html
    assert "https://" not in html and "http://" not in html.replace("http://testserver", "")
