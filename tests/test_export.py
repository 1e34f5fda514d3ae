"""Export of history: a user's own uploads as CSV or JSON Lines, filtered as the history
page filters, safe to open in a spreadsheet, streamed in chunks; staff export everyone's
from the admin."""

from __future__ import annotations

import csv
import io
import json
import re
from html import unescape

import pytest
from django.db import connection
from django.http import StreamingHttpResponse
from django.test.utils import CaptureQueriesContext

from recognition import export
from recognition.engine.manifest import Manifest
from recognition.models import Classification, Upload
from recognition.services import upload_classify
from tests.web_fixtures import as_upload, set_prediction_label

pytestmark = pytest.mark.django_db

EXPORT = "/api/v1/classifications/export/"
FORMULA_NAMES = ['=HYPERLINK("evil.example","x").jpg', "+1.jpg", "-2.jpg", "@x.jpg"]


def upload(user, make_image, name: str) -> Upload:
    return upload_classify(user=user, file=as_upload(make_image(), name)).upload


def body(response) -> str:
    assert isinstance(response, StreamingHttpResponse)
    return b"".join(response.streaming_content).decode("utf-8")


def csv_rows(response) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(body(response))))


def test_a_users_export_holds_exactly_their_uploads_and_csv_cells_never_run_as_formulas(
    alice, bob, alice_client, make_image, prepared_models_dir, session_model_key
):
    mine = [upload(alice, make_image, name) for name in [*FORMULA_NAMES, "plain.jpg"]]
    set_prediction_label(mine[-1], 2, "@griffin")
    bobs = upload(bob, make_image, "bobs.jpg")
    weights_sha256 = Manifest.read(prepared_models_dir / session_model_key).weights_sha256

    response = alice_client.get(EXPORT)
    rows = csv_rows(response)

    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert re.fullmatch(
        r'attachment; filename="classifications-\d{4}-\d\d-\d\d\.csv"',
        response["Content-Disposition"],
    )
    assert len(rows) == len(mine)
    quoted = {"'" + name for name in FORMULA_NAMES}
    assert {row["filename"] for row in rows} == quoted | {"plain.jpg"}
    assert {row["sha256"] for row in rows} == {u.stored_image.sha256 for u in mine}
    assert bobs.stored_image.sha256 not in body(alice_client.get(EXPORT))
    plain = next(row for row in rows if row["filename"] == "plain.jpg")
    assert plain["label_2"] == "'@griffin"
    assert (plain["width"], plain["height"], plain["format"]) == ("64", "48", "JPEG")
    assert int(plain["bytes"]) == mine[-1].stored_image.byte_size
    assert plain["weights_sha256"] == weights_sha256
    assert f"{plain['model_name']}-{plain['model_version']}" == session_model_key
    # Ten predictions, numbers written as numbers (no quote in front), then the owner's
    # correction (none here).
    assert list(rows[0])[-6:-3] == ["label_10", "index_10", "score_10"]
    assert list(rows[0])[-3:] == ["correction_label", "correction_index", "correction_status"]
    assert plain["correction_label"] == plain["correction_status"] == ""
    assert 0 <= float(plain["score_1"]) <= 1 and int(plain["index_10"]) >= 0
    assert plain["created_at"] == mine[-1].created_at.isoformat()

    jsonl = alice_client.get(EXPORT, {"format": "jsonl"})
    records = [json.loads(line) for line in body(jsonl).splitlines()]

    assert jsonl["Content-Type"] == "application/x-ndjson"
    assert jsonl["Content-Disposition"].endswith('.jsonl"')
    # Same rows, same order; JSON needs no guard, so the names come out as uploaded.
    assert [r["filename"] for r in records] == [row["filename"].removeprefix("'") for row in rows]
    assert [r["image"]["sha256"] for r in records] == [row["sha256"] for row in rows]
    assert {r["model"]["weights_sha256"] for r in records} == {weights_sha256}
    predictions = next(r for r in records if r["filename"] == "plain.jpg")["predictions"]
    assert [p["rank"] for p in predictions] == list(range(1, 11))
    assert predictions[1]["label"] == "@griffin"
    assert "username" not in records[0]


def test_the_export_honours_the_history_pages_filters_and_its_links_carry_them(
    alice, alice_client, make_image
):
    griffin = upload(alice, make_image, "griffin.jpg")
    set_prediction_label(griffin, 1, "griffin")
    upload(alice, make_image, "other.jpg")

    by_label = csv_rows(alice_client.get(EXPORT, {"label": "GRIFF"}))
    page = alice_client.get("/history/", {"q": "griffin"}).content.decode()
    links = [unescape(href) for href in re.findall(r'href="([^"]*/export/[^"]*)"', page)]

    assert [row["filename"] for row in by_label] == ["griffin.jpg"]
    assert len(links) == 2 and all("q=griffin" in link for link in links)
    assert [row["filename"] for row in csv_rows(alice_client.get(links[0]))] == ["griffin.jpg"]
    jsonl = body(alice_client.get(links[1])).splitlines()
    assert [json.loads(line)["filename"] for line in jsonl] == ["griffin.jpg"]
    Classification.objects.filter(pk=griffin.classification_id).update(top_score=0.1)
    assert csv_rows(alice_client.get(EXPORT, {"q": "griffin", "min_confidence": 50})) == []


def test_bad_parameters_and_anonymous_visitors_get_json_errors(alice_client, client):
    wrong_format = alice_client.get(EXPORT, {"format": "xml"})
    reversed_dates = alice_client.get(
        EXPORT, {"uploaded_from": "2026-03-02", "uploaded_until": "2026-03-01"}
    )
    too_long = alice_client.get(EXPORT, {"label": "x" * 201})
    anonymous = client.get(EXPORT)

    assert wrong_format.status_code == 400
    assert wrong_format.json()["error"]["code"] == "invalid_input"
    assert "format" in wrong_format.json()["error"]["fields"]
    assert reversed_dates.status_code == 400
    assert "uploaded_until" in reversed_dates.json()["error"]["fields"]
    assert too_long.status_code == 400 and "label" in too_long.json()["error"]["fields"]
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "not_authenticated"


def test_the_export_is_streamed_and_read_from_the_database_in_chunks(
    alice, alice_client, make_image, monkeypatch
):
    monkeypatch.setattr(export, "CHUNK_SIZE", 2)
    for n in range(5):
        upload(alice, make_image, f"{n}.jpg")

    with CaptureQueriesContext(connection) as answering:
        response = alice_client.get(EXPORT)
    with CaptureQueriesContext(connection) as streaming:
        rows = csv_rows(response)
    prediction_reads = [
        q for q in streaming.captured_queries if 'FROM "recognition_prediction"' in q["sql"]
    ]

    assert len(rows) == 5
    # Nothing is read before the body is sent, and then 2 uploads at a time: 3 reads of
    # predictions for 5 uploads. A list() anywhere would read them all at once.
    assert not [q for q in answering.captured_queries if '"recognition_upload"' in q["sql"]]
    assert len(prediction_reads) == 3


def test_staff_export_every_users_uploads_from_the_admin_with_their_names(
    alice, bob, superuser_client, make_image
):
    upload(alice, make_image, "alices.jpg")
    bobs = upload(bob, make_image, "bobs.jpg")
    # A model version whose build is gone from this server: its weights hash is unknown.
    Classification.objects.filter(pk=bobs.classification_id).update(model_version="gone")
    # "Select all": the browser sends the page's ticked rows and select_across.
    everything = {
        "action": "export_csv",
        "select_across": "1",
        "index": "0",
        "_selected_action": [bobs.pk],
    }

    rows = csv_rows(superuser_client.post("/admin/recognition/upload/", everything))
    jsonl = superuser_client.post(
        "/admin/recognition/upload/", {**everything, "action": "export_jsonl"}
    )
    records = [json.loads(line) for line in body(jsonl).splitlines()]

    assert list(rows[0])[:2] == ["username", "id"]
    assert {(row["username"], row["filename"]) for row in rows} == {
        ("alice", "alices.jpg"),
        ("bob", "bobs.jpg"),
    }
    assert next(row for row in rows if row["username"] == "bob")["weights_sha256"] == ""
    assert {(r["username"], r["filename"]) for r in records} == {
        ("alice", "alices.jpg"),
        ("bob", "bobs.jpg"),
    }
