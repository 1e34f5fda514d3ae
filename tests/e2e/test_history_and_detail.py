"""History, detail and delete in a real browser, and what another person cannot see."""

from __future__ import annotations

import io
import re

import pytest
from PIL import Image
from playwright.sync_api import expect

from recognition.configured_classifier import get_classifier
from recognition.models import Upload
from recognition.selectors import SEARCH_RANKS
from recognition.services import upload_classify
from recognition.thumbnails import THUMBNAIL_SIZE
from tests.web_fixtures import as_upload, make_pending_thumbnails

from .conftest import image_shown, screenshot_at_both_widths

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PERCENT = re.compile(r"\d{1,3}\.\d%")
CONTENT_TYPES = {".jpg": "image/jpeg", ".png": "image/png"}


def upload_photos(user, paths) -> list[Upload]:
    return [
        upload_classify(
            user=user, file=as_upload(path.read_bytes(), path.name, CONTENT_TYPES[path.suffix])
        ).upload
        for path in paths
    ]


def shown_labels(upload: Upload) -> list[str]:
    return [p.label for p in upload.classification.predictions.all()[:SEARCH_RANKS]]


def test_history_shows_thumbnails_finds_a_label_and_leads_to_a_detail_page_that_deletes(
    alice, alice_page, photos
):
    uploads = upload_photos(alice, photos.values())
    assert make_pending_thumbnails() == 3  # what the worker does after the uploads
    page = alice_page

    page.goto("/history/")

    cards = page.locator(".gallery > li")
    expect(cards).to_have_count(3)
    for card, upload in zip(cards.all(), reversed(uploads)):  # newest first
        expect(card.locator(".card-label")).to_have_text(upload.classification.top_label)
        expect(card.locator(".card-score")).to_have_text(PERCENT)
        thumbnail = card.get_by_role("img", name=f"Thumbnail of {upload.original_filename}")
        expect(thumbnail).to_have_attribute("src", f"/uploads/{upload.pk}/thumbnail")
    assert screenshot_at_both_widths(page, "history") == {1280: 1280, 360: 360}
    for thumbnail in page.locator(".gallery img").all():
        assert max(image_shown(thumbnail)) == THUMBNAIL_SIZE  # the server's cached one

    # Suggestions: every category of the active model, once.
    categories = get_classifier().manifest().categories
    suggestions = page.locator("datalist#label-suggestions option")
    expect(suggestions).to_have_count(len(categories))
    label = uploads[0].classification.top_label
    expect(page.locator(f'datalist#label-suggestions option[value="{label}"]')).to_have_count(1)

    typed = label[:-2].upper() if len(label) > 5 else label.upper()  # in part, any case
    page.get_by_label("Label").fill(typed)
    page.get_by_role("button", name="Search").click()

    matching = [u for u in uploads if any(typed.lower() in s.lower() for s in shown_labels(u))]
    expect(cards).to_have_count(len(matching))
    expect(page.locator(".count")).to_contain_text(f"matching “{typed}”")

    shown = " | ".join(label for u in uploads for label in shown_labels(u)).lower()
    unused = next(c for c in categories if len(c) > 8 and c.lower() not in shown)
    page.get_by_label("Label").fill(unused)
    page.get_by_role("button", name="Search").click()
    expect(cards).to_have_count(0)
    expect(page.get_by_text(f"None of your uploads has a label matching “{unused}”")).to_be_visible()
    page.get_by_role("link", name="Show all your uploads").click()
    expect(cards).to_have_count(3)

    chosen = uploads[1]
    cards.filter(has_text=chosen.original_filename).get_by_role("link").click()

    expect(page.get_by_role("heading", level=1)).to_have_text(chosen.original_filename)
    alt = re.compile(f"^{re.escape(chosen.original_filename)}, recognised as ")
    image = page.get_by_role("img", name=alt)
    expect(image).to_be_visible()
    assert image_shown(image) == (chosen.stored_image.width, chosen.stored_image.height)
    predictions = page.locator(".detail .prediction")
    expect(predictions).to_have_count(5)
    for n in range(5):
        expect(predictions.nth(n).locator(".prediction-score")).to_have_text(PERCENT)
    stored = chosen.stored_image
    facts = page.locator("dl.facts")
    model = chosen.classification
    expect(facts).to_contain_text(f"{model.model_name} {model.model_version}")
    expect(facts).to_contain_text("Custom (fine-tuned)")
    expect(facts).to_contain_text(f"{stored.width} × {stored.height} pixels")
    expect(facts).to_contain_text(f"{stored.sha256[:12]}…")
    expect(facts.locator("time")).to_have_attribute("datetime", re.compile(r"^\d{4}-\d\d-\d\dT"))
    assert screenshot_at_both_widths(page, "detail") == {1280: 1280, 360: 360}

    page.get_by_role("link", name="Delete…").click()
    expect(page.get_by_role("heading", name=f"Delete {chosen.original_filename}?")).to_be_visible()
    page.get_by_role("button", name="Delete").click()

    expect(page).to_have_url(re.compile(r"/history/$"))
    expect(page.get_by_role("status")).to_have_text(f"Deleted {chosen.original_filename}.")
    expect(cards).to_have_count(2)
    expect(cards.filter(has_text=chosen.original_filename)).to_have_count(0)


def test_a_sideways_phone_photo_is_shown_upright_on_the_detail_page(alice, alice_page, photos):
    photo = Image.open(photos["grace_hopper.jpg"])
    exif = photo.getexif()
    exif[0x0112] = 6  # Orientation: the camera was turned; rotate 90° clockwise to view
    buffer = io.BytesIO()
    photo.save(buffer, format="JPEG", exif=exif.tobytes())
    upload = upload_classify(user=alice, file=as_upload(buffer.getvalue(), "sideways.jpg")).upload
    page = alice_page

    page.goto(f"/uploads/{upload.pk}/")

    image = page.get_by_role("img", name=re.compile("^sideways.jpg, recognised as"))
    expect(image).to_be_visible()
    natural = image_shown(image)
    box = image.bounding_box()
    assert natural == (photo.height, photo.width)  # 600 × 512: turned upright
    assert box["width"] > box["height"]
    expect(page.locator("dl.facts")).to_contain_text(f"{photo.height} × {photo.width} pixels")


def test_another_person_gets_the_not_found_page_for_someone_elses_upload(
    alice, bob, new_context, photos
):
    upload = upload_photos(alice, [photos["chelsea.png"]])[0]
    page = new_context(user=bob).new_page()

    detail = page.goto(f"/uploads/{upload.pk}/")

    assert detail.status == 404
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    expect(page.get_by_text("chelsea.png")).to_have_count(0)
    screenshot_at_both_widths(page, "not-found")
    assert page.goto(f"/uploads/{upload.pk}/image").status == 404

    page.goto("/history/")
    expect(page.get_by_text("You have not uploaded anything yet.")).to_be_visible()
    page.get_by_role("link", name="Upload a photo").click()
    expect(page.get_by_role("heading", name="Recognise photos")).to_be_visible()
