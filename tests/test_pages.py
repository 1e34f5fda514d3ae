"""The server-rendered pages: upload, history, detail, delete, login and signup."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from recognition.configured_classifier import get_classifier
from recognition.models import Classification, Upload
from recognition.services import upload_classify
from tests.web_fixtures import (
    PASSWORD,
    as_upload,
    make_pending_thumbnails,
    media_files,
    set_prediction_label,
)

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "path", ["/", "/history/", "/uploads/1/", "/uploads/1/delete/", "/uploads/1/image", "/uploads/1/thumbnail"]
)
def test_every_page_asks_an_anonymous_visitor_to_log_in(path):
    response = Client().get(path)

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


def test_a_user_logs_in_and_lands_on_the_upload_page(alice):
    client = Client()

    response = client.post("/accounts/login/", {"username": "alice", "password": PASSWORD}, follow=True)

    assert response.redirect_chain[-1][0] == "/"
    assert "Recognise photos" in response.content.decode()


def test_a_wrong_password_is_refused(alice):
    response = Client().post("/accounts/login/", {"username": "alice", "password": "nope"})

    assert response.status_code == 200
    assert "did not match" in response.content.decode()


def test_logging_out_takes_a_post_and_ends_the_session(alice_client):
    assert alice_client.get("/accounts/logout/").status_code == 405

    response = alice_client.post("/accounts/logout/")

    assert response.status_code == 302
    assert alice_client.get("/").status_code == 302


def test_the_footer_names_the_active_model(alice_client):
    model = get_classifier().identity()

    html = alice_client.get("/").content.decode()

    assert model.name in html
    assert model.version in html


def test_the_pages_still_work_without_a_model(alice_client, no_model):
    response = alice_client.get("/")

    assert response.status_code == 200
    assert "No recognition model is ready yet" in response.content.decode()
    assert Client().get("/accounts/login/").status_code == 200


def test_the_upload_page_offers_a_multiple_file_form_that_works_without_javascript(alice_client):
    html = alice_client.get("/").content.decode()

    assert 'enctype="multipart/form-data"' in html
    assert re.search(r'<input type="file" name="images"[^>]* multiple', html)
    assert '<label for="id_images"' in html
    assert "csrfmiddlewaretoken" in html
    assert "/static/recognition/upload.js" in html


def test_the_upload_page_classifies_several_files_at_once(alice_client, make_image):
    files = [as_upload(make_image(), "one.jpg"), as_upload(make_image("PNG"), "two.png", "image/png")]

    response = alice_client.post("/", {"images": files})

    assert response.status_code == 200
    html = response.content.decode()
    uploads = list(Upload.objects.order_by("id"))
    assert [u.original_filename for u in uploads] == ["one.jpg", "two.png"]
    for upload in uploads:
        top = upload.classification.predictions.first()
        assert f"/uploads/{upload.pk}/thumbnail" in html
        assert top.label in html
        assert f"{top.score * 100:.1f}%" in html
    assert html.count('class="prediction"') == 6
    assert "Already uploaded" not in html


def test_the_upload_page_marks_a_repeat(alice_client, make_image):
    data = make_image()
    alice_client.post("/", {"images": as_upload(data)})

    response = alice_client.post("/", {"images": as_upload(data)})

    assert "Already uploaded" in response.content.decode()
    assert Upload.objects.count() == 1


def test_the_upload_page_asks_for_a_file_when_none_was_chosen(alice_client):
    response = alice_client.post("/", {})

    assert response.status_code == 400
    assert "Choose at least one image." in response.content.decode()


def test_history_shows_the_users_uploads_newest_first(alice, alice_client, make_image):
    names = ["first.jpg", "second.jpg", "third.jpg"]
    for name in names:
        upload_classify(user=alice, file=as_upload(make_image(), name))

    html = alice_client.get("/history/").content.decode()

    positions = [html.index(name) for name in reversed(names)]
    assert positions == sorted(positions)
    assert "3 uploads" in html
    for upload in Upload.objects.all():
        assert upload.classification.top_label in html
        assert f"/uploads/{upload.pk}/thumbnail" in html


def test_history_searches_the_top_three_labels_in_part_and_in_any_case(
    alice, bob, alice_client, make_image
):
    top, third, fourth, other = (
        upload_classify(user=alice, file=as_upload(make_image(), f"{name}.jpg")).upload
        for name in ("top", "third", "fourth", "other")
    )
    bobs = upload_classify(user=bob, file=as_upload(make_image(), "bobs.jpg")).upload
    set_prediction_label(top, 1, "unicorn")
    set_prediction_label(third, 3, "baby unicorn")
    set_prediction_label(fourth, 4, "unicorn")  # shown to nobody: not searched
    set_prediction_label(other, 1, "griffin")
    set_prediction_label(bobs, 1, "unicorn")

    def found(query: str) -> set[str]:
        response = alice_client.get("/history/", {"q": query})
        return {u.original_filename for u in response.context["page"].object_list}

    assert found("UNICORN") == {"top.jpg", "third.jpg"}
    assert found("riff") == {"other.jpg"}
    html = alice_client.get("/history/", {"q": "zzz no such label"}).content.decode()
    assert "None of your uploads has a label matching" in html


def test_history_is_paginated(alice, alice_client, make_image, monkeypatch):
    from recognition.views import pages

    monkeypatch.setattr(pages, "HISTORY_PAGE_SIZE", 2)
    for n in range(5):
        upload_classify(user=alice, file=as_upload(make_image(), f"{n}.jpg"))

    first = alice_client.get("/history/")
    last = alice_client.get("/history/", {"page": 3})

    assert len(first.context["page"].object_list) == 2
    assert "Page 1 of 3" in first.content.decode()
    assert 'rel="next" href="?page=2"' in first.content.decode()
    assert [u.original_filename for u in last.context["page"].object_list] == ["0.jpg"]
    assert alice_client.get("/history/", {"page": 99}).status_code == 200


def test_an_empty_history_invites_an_upload(alice_client):
    assert "You have not uploaded anything yet" in alice_client.get("/history/").content.decode()


def test_the_detail_page_shows_the_image_predictions_model_and_file_facts(alice, alice_client, make_image):
    upload = upload_classify(user=alice, file=as_upload(make_image(), "cat.jpg")).upload

    response = alice_client.get(f"/uploads/{upload.pk}/")

    assert response.status_code == 200
    html = response.content.decode()
    classification = upload.classification
    assert f'src="/uploads/{upload.pk}/image"' in html
    assert 'alt="cat.jpg, recognised as' in html
    for prediction in classification.predictions.all()[:5]:
        assert prediction.label in html
    assert classification.model_name in html and classification.model_version in html
    assert "64 × 48 pixels" in html
    assert upload.stored_image.sha256 in html
    assert f"/uploads/{upload.pk}/delete/" in html


def test_the_detail_page_says_whether_the_model_ran_custom_weights_even_once_it_is_gone(
    alice, alice_client, make_image
):
    upload = upload_classify(user=alice, file=as_upload(make_image())).upload
    assert get_classifier().identity().custom  # the session's model: random weights

    shown = alice_client.get(f"/uploads/{upload.pk}/").content.decode()
    mine = Classification.objects.filter(pk=upload.classification_id)
    mine.update(model_version="retired0000")  # a model no longer prepared here
    retired = alice_client.get(f"/uploads/{upload.pk}/").content.decode()
    mine.update(custom_weights=False)
    official = alice_client.get(f"/uploads/{upload.pk}/").content.decode()
    mine.update(custom_weights=None)  # recorded before this was kept
    unknown = alice_client.get(f"/uploads/{upload.pk}/").content.decode()

    assert "<dt>Weights</dt><dd>Custom (fine-tuned)</dd>" in shown
    assert f"{upload.stored_image.sha256[:12]}…</code>" in shown
    assert "<dt>Weights</dt><dd>Custom (fine-tuned)</dd>" in retired
    assert "<dt>Weights</dt><dd>Official</dd>" in official
    assert "<dt>Weights</dt>" not in unknown


def test_the_detail_page_reads_no_model_manifest(alice, alice_client, make_image, monkeypatch):
    from recognition.engine.manifest import Manifest

    upload = upload_classify(user=alice, file=as_upload(make_image())).upload
    Classification.objects.filter(pk=upload.classification_id).update(model_version="old000000000")
    reads = []
    monkeypatch.setattr(Manifest, "read", classmethod(lambda cls, d: reads.append(d)))

    assert alice_client.get(f"/uploads/{upload.pk}/").status_code == 200
    assert reads == []


def test_the_image_and_thumbnail_are_served_to_their_owner(alice, alice_client, make_image):
    data = make_image(size=(600, 400))
    upload = upload_classify(user=alice, file=as_upload(data, "big.jpg")).upload
    make_pending_thumbnails()  # what the worker does after the upload

    image = alice_client.get(f"/uploads/{upload.pk}/image")
    thumbnail = alice_client.get(f"/uploads/{upload.pk}/thumbnail")

    assert image.status_code == 200
    assert image["Content-Type"] == "image/jpeg"
    assert b"".join(image.streaming_content) == data
    assert "sandbox" in image["Content-Security-Policy"]
    assert thumbnail.status_code == 200
    assert thumbnail["Content-Type"] == "image/jpeg"
    from io import BytesIO

    from PIL import Image

    assert Image.open(BytesIO(b"".join(thumbnail.streaming_content))).size == (256, 171)


def test_a_thumbnail_is_made_once_and_then_reused(alice, bob, alice_client, bob_client, make_image):
    data = make_image()
    alices = upload_classify(user=alice, file=as_upload(data)).upload
    bobs = upload_classify(user=bob, file=as_upload(data)).upload

    assert make_pending_thumbnails() == 1
    for _ in range(2):
        assert alice_client.get(f"/uploads/{alices.pk}/thumbnail")["Content-Type"] == "image/jpeg"
        assert bob_client.get(f"/uploads/{bobs.pk}/thumbnail")["Content-Type"] == "image/jpeg"

    assert make_pending_thumbnails() == 0


def test_deleting_asks_for_confirmation_and_then_removes_the_upload(
    alice, alice_client, make_image, django_capture_on_commit_callbacks
):
    upload = upload_classify(user=alice, file=as_upload(make_image(), "cat.jpg")).upload

    confirm = alice_client.get(f"/uploads/{upload.pk}/delete/")
    assert "Delete cat.jpg?" in confirm.content.decode()
    assert Upload.objects.exists()

    with django_capture_on_commit_callbacks(execute=True):
        response = alice_client.post(f"/uploads/{upload.pk}/delete/", follow=True)

    assert response.redirect_chain[-1][0] == "/history/"
    assert "Deleted cat.jpg." in response.content.decode()
    assert not Upload.objects.exists()
    assert not media_files()


def test_an_unknown_page_gets_the_friendly_404(alice_client):
    response = alice_client.get("/no/such/page/")

    assert response.status_code == 404
    assert "Not found" in response.content.decode()


def test_signup_does_not_exist_unless_it_is_allowed():
    assert Client().get("/accounts/signup/").status_code == 404
    assert "Sign up" not in Client().get("/accounts/login/").content.decode()


def test_signup_creates_an_ordinary_user_when_allowed(settings, django_user_model):
    settings.RECOGNITION_ALLOW_SIGNUP = True
    client = Client()

    response = client.post(
        "/accounts/signup/",
        {"username": "carol", "password1": PASSWORD, "password2": PASSWORD, "is_staff": "on"},
    )

    assert response.status_code == 302
    carol = django_user_model.objects.get(username="carol")
    assert not carol.is_staff and not carol.is_superuser
    assert client.get("/").status_code == 200


def test_static_files_are_served_by_the_app_itself(alice_client):
    response = alice_client.get("/static/recognition/site.css")

    assert response.status_code == 200


def test_an_image_that_cannot_be_made_into_a_thumbnail_gets_a_404_and_is_never_decoded_by_a_view(
    alice, alice_client, make_image, monkeypatch
):
    from recognition import storage, thumbnails

    data = make_image(seed=41)
    upload = upload_classify(user=alice, file=as_upload(data)).upload
    storage.save(upload.stored_image.path, data[: len(data) // 3])  # damaged after the upload
    make_pending_thumbnails()
    decoded = []
    real_decode = thumbnails.decode_image
    monkeypatch.setattr(
        thumbnails, "decode_image", lambda *a, **k: decoded.append(1) or real_decode(*a, **k)
    )
    url = f"/uploads/{upload.pk}/thumbnail"

    assert [alice_client.get(url).status_code for _ in range(3)] == [404, 404, 404]
    assert decoded == []


def test_the_image_thumbnail_and_delete_views_do_not_read_the_predictions(
    alice, alice_client, make_image, django_capture_on_commit_callbacks
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    upload = upload_classify(user=alice, file=as_upload(make_image(seed=42))).upload
    make_pending_thumbnails()
    urls = [f"/uploads/{upload.pk}/{view}" for view in ("image", "thumbnail", "delete/")]

    for url in urls:
        with CaptureQueriesContext(connection) as queries:
            assert alice_client.get(url).status_code == 200
        tables = " ".join(query["sql"] for query in queries.captured_queries)
        assert "recognition_prediction" not in tables, url
        assert "recognition_classification" not in tables, url
    with CaptureQueriesContext(connection) as queries, django_capture_on_commit_callbacks(
        execute=True
    ):
        assert alice_client.post(urls[-1]).status_code == 302
    reads = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("SELECT")]
    assert not [sql for sql in reads if "recognition_prediction" in sql]
    assert not Upload.objects.filter(pk=upload.pk).exists()
