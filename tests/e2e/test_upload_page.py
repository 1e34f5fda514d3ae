"""The upload page in a real browser: picker, drop, paste, checks before sending, progress,
results in place, a plain form without JavaScript, and its weight."""

from __future__ import annotations

import base64
import json
import math
import re
from pathlib import Path

import pytest
from django.template.defaultfilters import filesizeformat
from PIL import Image
from playwright.sync_api import Page, expect

from recognition.configured_classifier import get_classifier
from recognition.errors import too_large_message
from recognition.models import Upload
from recognition.uncertainty import is_uncertain
from tests.web_fixtures import PASSWORD

from .conftest import SCREENSHOTS, image_shown, screenshot_at_both_widths

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PERCENT = re.compile(r"^\d{1,3}\.\d%$")
API_PATH = "/api/v1/classifications/"


def results(page: Page):
    return page.locator("#results > li.result")


def expect_recognised(result, filename: str) -> None:
    """A finished result as a person sees it: the name, a prominent top label, and three
    labels each with a filled bar and a percentage."""
    expect(result.locator(".result-name")).to_contain_text(filename)
    expect(result.locator(".top-label")).to_be_visible()
    expect(result.locator(".top-label .top-score")).to_have_text(PERCENT)
    predictions = result.locator(".prediction")
    expect(predictions).to_have_count(3)
    for n in range(3):
        prediction = predictions.nth(n)
        expect(prediction.locator(".prediction-label")).not_to_be_empty()
        expect(prediction.locator(".prediction-score")).to_have_text(PERCENT)
        score = float(prediction.locator(".prediction-score").inner_text().rstrip("%"))
        bar = prediction.locator(".bar").bounding_box()
        fill = prediction.locator(".bar-fill").bounding_box()
        assert bar["width"] > 40, "the bar is wide enough to read"
        assert fill["width"] == pytest.approx(max(score / 100 * bar["width"], 2), abs=3)
    # The server's thumbnail has replaced the local preview.
    thumbnail = result.locator("img.result-thumb")
    expect(thumbnail).to_have_attribute("src", re.compile(r"^/uploads/\d+/thumbnail$"))
    image_shown(thumbnail)


def files_payload(paths: list[Path]) -> list[dict[str, str]]:
    types = {".jpg": "image/jpeg", ".png": "image/png"}
    return [
        {"name": p.name, "type": types[p.suffix], "data": base64.b64encode(p.read_bytes()).decode()}
        for p in paths
    ]


# Page-side: a DataTransfer holding real File objects made from the bytes passed in.
DATA_TRANSFER_JS = """(files) => {
    const transfer = new DataTransfer();
    for (const file of files) {
        const bytes = Uint8Array.from(atob(file.data), (c) => c.charCodeAt(0));
        transfer.items.add(new File([bytes], file.name, {type: file.type}));
    }
    return transfer;
}"""


def drop_files(page: Page, paths: list[Path]) -> None:
    """What the browser does when files are dragged from the desktop onto the drop zone."""
    page.evaluate(
        f"""(files) => {{
            const transfer = ({DATA_TRANSFER_JS})(files);
            const zone = document.getElementById("dropzone");
            const init = {{dataTransfer: transfer, bubbles: true, cancelable: true}};
            zone.dispatchEvent(new DragEvent("dragenter", init));
            zone.dispatchEvent(new DragEvent("dragover", init));
            window.__dragHighlighted = zone.classList.contains("is-dragging");
            zone.dispatchEvent(new DragEvent("drop", init));
        }}""",
        files_payload(paths),
    )


def paste_files(page: Page, paths: list[Path]) -> None:
    """What the browser does on Ctrl+V with an image on the clipboard."""
    page.evaluate(
        f"""(files) => {{
            const transfer = ({DATA_TRANSFER_JS})(files);
            const init = {{clipboardData: transfer, bubbles: true, cancelable: true}};
            document.dispatchEvent(new ClipboardEvent("paste", init));
        }}""",
        files_payload(paths),
    )


def test_a_person_logs_in_with_the_form_sees_the_model_and_logs_out(page, alice):
    page.goto("/")

    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()

    expect(page.get_by_role("heading", name="Recognise photos")).to_be_visible()
    model = get_classifier().identity()
    expect(page.locator(".site-footer")).to_contain_text(f"{model.name} version {model.version}")
    expect(page.locator(".site-footer")).to_contain_text("custom weights")

    page.get_by_role("button", name="Log out alice").click()

    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    page.goto("/history/")
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()


def test_two_photos_chosen_with_the_picker_are_previewed_then_recognised_in_place(alice_page, photos):
    page = alice_page
    console_errors = []  # a script error or a Content-Security-Policy refusal, say
    page.on("console", lambda message: message.type == "error" and console_errors.append(message.text))
    page.goto("/")
    chosen = [photos["grace_hopper.jpg"], photos["chelsea.png"]]

    page.get_by_label("Choose images").set_input_files(chosen)

    previews = page.locator("#previews > li")
    expect(previews).to_have_count(2)
    for preview, path in zip(previews.all(), chosen):
        expect(preview).to_contain_text(path.name)
        expect(preview.get_by_role("img", name=f"Preview of {path.name}")).to_be_visible()
        assert image_shown(preview.locator("img")) == Image.open(path).size
    expect(page.locator("#upload-submit")).to_have_text("Recognise 2 images")
    screenshot_at_both_widths(page, "upload-chosen")

    page.locator("#upload-submit").click()

    expect(previews).to_have_count(0)
    expect(results(page)).to_have_count(2)
    for result, path in zip(results(page).all(), chosen):
        expect_recognised(result, path.name)
    expect(page.get_by_text("Already uploaded")).to_have_count(0)
    expect(page.get_by_role("status")).to_have_text("2 images recognised.")
    assert console_errors == []


def test_the_browser_refuses_inline_scripts_and_eval_on_the_sites_pages(alice_page):
    """The pages run under their real Content-Security-Policy in these tests; this shows
    the browser enforces it, so what passes here passes under the policy."""
    page = alice_page
    page.goto("/")

    page.evaluate(
        """() => {
            const script = document.createElement("script");
            script.textContent = "document.documentElement.dataset.inline = 'ran';";
            document.body.appendChild(script);
            setTimeout(() => {  // from the page's own timer, as its own code would
                try {
                    eval("1");
                    document.documentElement.dataset.eval = "ran";
                } catch (error) {
                    document.documentElement.dataset.eval = "refused: " + error.name;
                }
            });
        }"""
    )

    html = page.locator("html")
    # An inline script that is allowed runs as it is added, before evaluate returns.
    assert html.get_attribute("data-inline") is None
    expect(html).to_have_attribute("data-eval", re.compile(r"^(ran|refused: \w+)$"))  # it ran
    assert html.get_attribute("data-eval") == "refused: EvalError"


def test_a_keyboard_user_sees_where_the_focus_is_on_the_file_picker(alice_page):
    page = alice_page
    page.goto("/")
    choose = page.locator("label.dropzone-label")
    assert choose.evaluate("(label) => getComputedStyle(label).outlineStyle") == "none"

    for _ in range(10):  # Tab through the header's links to the picker
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "id_images":
            break

    assert page.evaluate("document.activeElement.id") == "id_images"
    outline = choose.evaluate(
        "(label) => [getComputedStyle(label).outlineStyle, getComputedStyle(label).outlineWidth]"
    )
    assert outline == ["solid", "3px"]


# Page-side: a record of every value the upload's progress bar is given, with the words
# beside it at that moment, in order. The test reads it afterwards, so no value slips by
# between two looks, however fast or slow the machine. Records arrive in batches (the
# last progress event and the end of the upload come in one task), so each value is
# rebuilt from the next record's old value, and each text from the text node put in.
RECORD_PROGRESS_JS = """() => {
    const shown = (window.__progressShown = []);
    let words = null;
    new MutationObserver((records) => {
        records.forEach((record, i) => {
            const target = record.target;
            if (record.type === "childList" && target.classList.contains("result-state")) {
                words = Array.from(record.addedNodes, (node) => node.textContent).join("");
            } else if (record.type === "attributes" && target.localName === "progress") {
                const next = records.slice(i + 1).find(
                    (later) => later.target === target && later.type === "attributes");
                const value = next ? next.oldValue : target.getAttribute("value");
                shown.push({value: value, words: words});
            }
        });
    }).observe(document.getElementById("results"), {
        subtree: true, childList: true, attributes: true,
        attributeFilter: ["value"], attributeOldValue: true,
    });
}"""


def test_each_file_shows_its_upload_progress_on_a_slow_connection(new_context, alice, photos):
    context = new_context(user=alice)
    page = context.new_page()
    page.goto("/")
    network = context.new_cdp_session(page)
    network.send("Network.enable")
    # About 50 KB/s up: the 235 KB photo takes some five seconds to leave, however fast
    # the machine, and the browser reports its progress several times a second.
    network.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 20, "downloadThroughput": -1, "uploadThroughput": 50_000},
    )
    page.evaluate(RECORD_PROGRESS_JS)

    page.get_by_label("Choose images").set_input_files([photos["chelsea.png"]])
    page.locator("#upload-submit").click()

    result = results(page).first
    expect_recognised(result, "chelsea.png")
    expect(result.get_by_role("progressbar")).to_have_count(0)
    shown = page.evaluate("window.__progressShown")
    *uploading, last = shown
    fractions = [float(entry["value"]) for entry in uploading]
    assert fractions[0] == 0, shown
    assert any(0 < fraction < 1 for fraction in fractions), f"never part of the way: {shown}"
    assert fractions == sorted(fractions), f"went backwards: {shown}"
    for fraction, entry in zip(fractions, uploading):
        assert entry["words"] == f"Uploading… {math.floor(fraction * 100 + 0.5)}%", shown
    # Then, sent, it waits for the server with an indeterminate bar.
    assert last == {"value": None, "words": "Recognising…"}, shown


def test_photos_dropped_on_the_page_or_pasted_are_recognised_and_a_repeat_is_marked(alice_page, photos):
    page = alice_page
    page.goto("/")

    drop_files(page, [photos["grace_hopper.jpg"], photos["coffee.png"]])

    assert page.evaluate("window.__dragHighlighted"), "the drop zone lights up under the files"
    expect(page.locator("#dropzone")).not_to_have_class(re.compile("is-dragging"))
    expect(page.locator("#previews > li")).to_have_count(2)
    page.locator("#upload-submit").click()
    expect(results(page)).to_have_count(2)
    expect_recognised(results(page).nth(0), "grace_hopper.jpg")
    expect_recognised(results(page).nth(1), "coffee.png")

    paste_files(page, [photos["grace_hopper.jpg"]])
    expect(page.locator("#previews > li")).to_have_count(1)
    page.locator("#upload-submit").click()

    expect(results(page)).to_have_count(3)
    repeat = results(page).first  # the newest batch goes on top
    expect_recognised(repeat, "grace_hopper.jpg")
    expect(repeat.locator(".badge:not(.badge-uncertain)")).to_have_text("Already uploaded")
    expect(page.locator(".badge:not(.badge-uncertain)")).to_have_count(1)
    # Each result the server calls uncertain says so, as the server-rendered page would.
    shown = {
        upload.original_filename: is_uncertain(upload.classification.top_score, upload.classification.margin)
        for upload in Upload.objects.select_related("classification")
    }
    for index, filename in enumerate(["grace_hopper.jpg", "grace_hopper.jpg", "coffee.png"]):
        expect(results(page).nth(index).locator(".badge-uncertain")).to_have_count(int(shown[filename]))
    assert screenshot_at_both_widths(page, "upload-results") == {1280: 1280, 360: 360}


def test_a_text_file_is_refused_before_sending_and_a_disguised_one_gets_the_servers_message(alice_page):
    page = alice_page
    page.goto("/")
    api_requests = []
    page.on("request", lambda request: API_PATH in request.url and api_requests.append(request))
    text = b"Shopping list: milk, eggs, bread.\n"

    page.get_by_label("Choose images").set_input_files(
        {"name": "notes.txt", "mimeType": "text/plain", "buffer": text}
    )

    refused = page.locator("#previews > li.preview-rejected")
    expect(refused).to_contain_text("notes.txt")
    expect(refused).to_contain_text("not an image in a supported format")
    page.locator("#upload-submit").click()
    expect(page.get_by_role("status")).to_have_text("None of the chosen files can be sent.")
    expect(results(page)).to_have_count(0)
    assert api_requests == []

    refused.get_by_role("button", name="Remove notes.txt").click()
    page.get_by_label("Choose images").set_input_files(
        {"name": "holiday.jpg", "mimeType": "image/jpeg", "buffer": text}
    )
    with page.expect_response(lambda response: API_PATH in response.url) as answer:
        page.locator("#upload-submit").click()

    assert answer.value.status == 415
    server_message = answer.value.json()["error"]["message"]
    error = results(page).first.get_by_role("alert")
    expect(error).to_have_text(server_message)
    expect(results(page).first).to_contain_text("holiday.jpg")
    screenshot_at_both_widths(page, "upload-refused-by-server")


def test_a_photo_over_the_servers_size_limit_is_refused_before_sending(alice_page, photos, settings):
    settings.RECOGNITION_MAX_UPLOAD_BYTES = 100_000  # between the two photos' sizes
    page = alice_page
    page.goto("/")
    expect(page.locator("#upload-hint")).to_contain_text(f"up to {filesizeformat(100_000)} each")

    chosen = [photos["grace_hopper.jpg"], photos["chelsea.png"]]
    page.get_by_label("Choose images").set_input_files(chosen)

    refused = page.locator("#previews > li.preview-rejected")
    expect(refused).to_have_count(1)
    expect(refused).to_contain_text("chelsea.png")
    expect(refused).to_contain_text(too_large_message(100_000))  # the server's own words
    expect(page.locator("#upload-submit")).to_have_text("Recognise 1 image")
    screenshot_at_both_widths(page, "upload-refused-in-browser")
    page.locator("#upload-submit").click()
    expect(results(page)).to_have_count(1)
    expect_recognised(results(page).first, "grace_hopper.jpg")


def test_without_javascript_the_page_is_a_plain_form_that_still_recognises_several_photos(
    new_context, alice, photos
):
    page = new_context(user=alice, javascript=False).new_page()
    page.goto("/")
    chosen = [photos["grace_hopper.jpg"], photos["coffee.png"]]

    expect(page.get_by_text("Drop photos here")).to_be_hidden()
    page.get_by_label("Choose images").set_input_files(chosen)
    page.get_by_role("button", name="Recognise").click()

    expect(page.get_by_role("heading", name="Results")).to_be_visible()
    expect(results(page)).to_have_count(2)
    for result, path in zip(results(page).all(), chosen):
        expect_recognised(result, path.name)
    screenshot_at_both_widths(page, "upload-without-javascript")


def test_the_upload_page_with_its_css_and_javascript_weighs_under_100_kb(alice_page):
    page = alice_page
    page.goto("/")
    page.wait_for_load_state("load")

    entries = page.evaluate(
        """() => performance.getEntriesByType("navigation")
            .concat(performance.getEntriesByType("resource"))
            .filter((entry) => entry.initiatorType !== "img")
            .map((entry) => ({name: entry.name, type: entry.initiatorType,
                              encoded: entry.encodedBodySize, transferred: entry.transferSize}))"""
    )

    names = [entry["name"] for entry in entries]
    assert any(name.endswith("/static/recognition/site.css") for name in names)
    assert any(name.endswith("/static/recognition/upload.js") for name in names)
    assert all(entry["encoded"] > 0 for entry in entries), entries
    total = sum(entry["encoded"] for entry in entries)
    SCREENSHOTS.parent.mkdir(parents=True, exist_ok=True)
    (SCREENSHOTS.parent / "upload-page-weight.json").write_text(
        json.dumps({"total_encoded_bytes": total, "entries": entries}, indent=2) + "\n"
    )
    assert total < 100_000
