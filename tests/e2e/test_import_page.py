"""The Import page in a real browser: five real photos and a text file dropped on it
start an import, and its page follows the job live, without reloading, until every file
has its outcome.

The live server queues the job for a worker, and none runs in these tests; so once the
page shows the queued import, the worker's own job function (jobs.run) runs it from a
thread of this process, on the same database, while the browser watches."""

from __future__ import annotations

import base64
import re
import threading
from pathlib import Path

import pytest
import skimage
from django.db import connection
from playwright.sync_api import Page, expect

from recognition import jobs
from recognition.models import Job, JobStatus

from .conftest import PHOTOS, TIMEOUT_MS, screenshot_at_both_widths

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PICTURES = [
    *PHOTOS.values(),
    Path(skimage.data_dir) / "rocket.jpg",
    Path(skimage.data_dir) / "astronaut.png",
]
TYPES = {".jpg": "image/jpeg", ".png": "image/png", ".txt": "text/plain"}

# Page-side: what the browser does when files are dragged from the desktop onto the page.
DROP_JS = """(files) => {
    const transfer = new DataTransfer();
    for (const file of files) {
        const bytes = Uint8Array.from(atob(file.data), (c) => c.charCodeAt(0));
        transfer.items.add(new File([bytes], file.name, {type: file.type}));
    }
    const zone = document.getElementById("dropzone");
    const init = {dataTransfer: transfer, bubbles: true, cancelable: true};
    zone.dispatchEvent(new DragEvent("dragenter", init));
    zone.dispatchEvent(new DragEvent("dragover", init));
    zone.dispatchEvent(new DragEvent("drop", init));
}"""

# Page-side: every value the progress bar is given, in order, and a mark that is lost if
# the page is ever loaded again (the no-JavaScript refresh would do that).
RECORD_JS = """() => {
    window.__samePage = true;
    const bar = document.getElementById("import-bar");
    window.__barValues = [bar.getAttribute("aria-valuenow")];
    new MutationObserver(() => {
        const value = bar.getAttribute("aria-valuenow");
        if (value !== window.__barValues[window.__barValues.length - 1]) window.__barValues.push(value);
    }).observe(bar, {attributes: true, attributeFilter: ["aria-valuenow"]});
}"""

# Page-side: each file's row as a reader and a screen reader meet it (white space aside).
ROWS_JS = """(rows) => rows.map((row) => [row.className, ...Array.from(row.children, (part) =>
    [part.tagName, part.className, part.getAttribute("href"), part.textContent.trim()])])"""


def drop(page: Page, files: list[tuple[str, bytes]]) -> None:
    payload = [
        {"name": name, "type": TYPES[Path(name).suffix], "data": base64.b64encode(data).decode()}
        for name, data in files
    ]
    page.evaluate(DROP_JS, payload)


def run_in_a_worker_thread(job_id: int, outcome: list[str]) -> threading.Thread:
    def work():
        try:
            outcome.append(jobs.run(job_id))
        finally:
            connection.close()  # this thread's own connection

    thread = threading.Thread(target=work, name=f"import-{job_id}")
    thread.start()
    return thread


def test_five_photos_and_a_text_file_dropped_are_followed_live_to_five_results_and_one_refusal(
    alice_page, settings
):
    settings.RECOGNITION_MAX_BATCH = 2  # three batches: the bar moves in steps
    page = alice_page
    console_errors = []
    # A script error or a Content-Security-Policy refusal, say; the browser's own request
    # for a favicon (the site has none) is not the page's.
    page.on("console", lambda message: message.type == "error"
            and not message.location["url"].endswith("/favicon.ico")
            and console_errors.append(message.text))
    page.goto("/imports/")
    dropped = [(path.name, path.read_bytes()) for path in PICTURES] + [("notes.txt", b"a shopping list")]

    drop(page, dropped)

    expect(page.locator("#import-chosen")).to_have_text("6 files chosen.")
    assert screenshot_at_both_widths(page, "import-chosen")[360] <= 360
    page.get_by_role("button", name="Import 6 files").click()

    expect(page).to_have_url(re.compile(r"/imports/\d+/$"))
    job_id = int(re.search(r"/imports/(\d+)/$", page.url)[1])
    bar = page.get_by_role("progressbar")
    expect(bar).to_have_attribute("aria-valuenow", "0")
    expect(page.locator("#import-state")).to_contain_text("Queued:")
    assert Job.objects.get(pk=job_id).status == JobStatus.QUEUED
    page.evaluate(RECORD_JS)

    outcome: list[str] = []
    worker = run_in_a_worker_thread(job_id, outcome)
    try:
        expect(bar).to_have_attribute("aria-valuenow", "100")
        expect(bar).to_have_attribute("aria-valuetext", "100%: 6 of 6 files")
        expect(page.locator("#import-percent")).to_have_text("100%")
        expect(page.locator("#import-state")).to_have_text("Finished.")
    finally:
        worker.join(timeout=TIMEOUT_MS / 1000)
    assert outcome == [JobStatus.DONE]

    assert page.evaluate("window.__samePage") is True  # followed by the script, not reloaded
    values = [int(value) for value in page.evaluate("window.__barValues")]
    assert values[0] == 0 and values[-1] == 100 and values == sorted(values), values
    expect(page.locator("#import-done")).to_have_text("5")
    expect(page.locator("#import-failed")).to_have_text("1")
    expect(page.locator("#import-time-left")).to_have_text("none")
    expect(page.locator("#import-rate")).to_have_text(re.compile(r"^\d+\.\d pictures/s$"))
    expect(page.locator("#import-cancel-form")).to_have_count(0)

    items = page.locator("#import-items > li")
    expect(items).to_have_count(6)
    results = page.locator("#import-items a.import-item-outcome")
    expect(results).to_have_count(5)
    for n, path in enumerate(PICTURES):
        expect(items.nth(n).locator(".import-item-name")).to_have_text(path.name)
        link = items.nth(n).locator("a.import-item-outcome")
        expect(link).to_have_attribute("href", re.compile(r"^/uploads/\d+/$"))
        expect(link.locator(".top-score")).to_have_text(re.compile(r"^\d{1,3}\.\d%$"))
    refused = page.locator("#import-items > li.import-item-failed")
    expect(refused).to_have_count(1)
    expect(refused.locator(".import-item-name")).to_have_text("notes.txt")
    expect(refused.locator(".error")).not_to_be_empty()

    # What the script built is what the server renders for the finished import.
    live = items.evaluate_all(ROWS_JS)
    page.reload()
    expect(page.locator("#import-items > li")).to_have_count(6)
    rendered = items.evaluate_all(ROWS_JS)
    assert live == rendered

    results.first.click()
    expect(page).to_have_url(re.compile(r"/uploads/\d+/$"))
    expect(page.get_by_role("heading", level=1)).to_have_text(PICTURES[0].name)
    page.go_back()
    widths = screenshot_at_both_widths(page, "import-finished")
    assert widths[360] <= 360, "the import's page fits a 360 px screen without sideways scrolling"
    assert console_errors == []
