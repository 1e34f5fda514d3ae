"""The correction loop in a real browser: the owner corrects a label on the detail page,
a reviewer accepts it in the queue with the keyboard alone, and the owner sees it
accepted; the statistics then show it, readable at phone width."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from playwright.sync_api import expect

from recognition.configured_classifier import get_classifier
from recognition.models import Classification, Correction, Review
from recognition.services import upload_classify
from tests.web_fixtures import as_upload

from .conftest import screenshot_at_both_widths

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_a_correction_made_on_the_detail_page_is_accepted_in_the_queue_with_the_keyboard(
    alice, new_context, django_user_model, photos, settings
):
    settings.RECOGNITION_UNCERTAIN_BELOW, settings.RECOGNITION_UNCERTAIN_MARGIN = 0.2, 0.005
    coffee, chelsea = (
        upload_classify(user=alice, file=as_upload(photos[name].read_bytes(), photos[name].name,
                                                   "image/png")).upload
        for name in ("coffee.png", "chelsea.png")
    )
    # Least confident first: the unsure chelsea.png comes first, coffee.png second.
    Classification.objects.filter(pk=chelsea.classification_id).update(top_score=0.05, margin=0.01)
    Classification.objects.filter(pk=coffee.classification_id).update(top_score=0.1, margin=0.01)
    category = next(
        name for name in get_classifier().manifest().categories
        if name != coffee.classification.top_label and len(name) > 6
    )
    reviewer = django_user_model.objects.create_user(username="rita", password="x")
    # After an earlier browser test's flush too: the group is made again with the tables.
    reviewer.groups.add(Group.objects.get(name="Reviewers"))

    owner = new_context(user=alice).new_page()
    owner.goto(f"/uploads/{coffee.pk}/")
    owner.get_by_label("No? This is actually").fill(category)
    owner.get_by_role("button", name="Save correction").click()
    expect(owner.locator(".correction")).to_contain_text(f"You said this is {category}")
    expect(owner.locator(".correction .badge")).to_have_text("Pending")

    queue = new_context(user=reviewer).new_page()
    queue.goto("/review/")
    items = queue.locator(".review-item")
    expect(items).to_have_count(2)
    expect(items.nth(0)).to_have_class("review-item is-selected")
    expect(items.nth(1).locator(".proposed-label")).to_have_text(category)
    assert screenshot_at_both_widths(queue, "review") == {1280: 1280, 360: 360}

    queue.keyboard.press("j")
    expect(items.nth(1)).to_have_class("review-item is-selected")
    queue.keyboard.press("k")
    expect(items.nth(0)).to_have_class("review-item is-selected")
    queue.keyboard.press("j")
    queue.keyboard.press("a")

    expect(queue.locator(".message")).to_contain_text(f"Accepted “{category}”")
    # The next item took the decided one's place: the one left, chosen.
    expect(items).to_have_count(1)
    expect(items.nth(0)).to_have_class("review-item is-selected")
    expect(items.nth(0).locator(".review-kind")).to_have_text("Uncertain result")

    owner.reload()
    expect(owner.locator(".correction .badge")).to_have_text("Accepted")
    correction = Correction.objects.get(upload=coffee)
    assert (correction.status, correction.reviewed_by) == ("accepted", reviewer)
    assert Review.objects.get().reviewer == reviewer

    # The statistics count it, and their charts fit a 360 px screen.
    queue.goto("/review/statistics/")
    expect(queue.locator("#confusions table")).to_contain_text(category)
    assert screenshot_at_both_widths(queue, "statistics") == {1280: 1280, 360: 360}
    queue.set_viewport_size({"width": 360, "height": 800})
    widths = queue.locator("svg").evaluate_all("(svgs) => svgs.map((s) => s.getBoundingClientRect().right)")
    assert len(widths) >= 3 and max(widths) <= 360  # rates, confusions, uncertain share...
