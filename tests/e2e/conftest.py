"""End-to-end set-up: Debian's Chromium, headless, driven by Playwright against a live
server that runs the session's real (random-weights) model.

Without Chromium the browser tests are skipped with a loud reason, except in CI (the
`CI` variable set): there a missing browser fails them, so a machine that lost its
browser cannot pass quietly. `make test` installs it first where it can
(scripts/ensure-chromium).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import matplotlib
import pytest
import skimage
from django.conf import settings
from django.test import Client, override_settings
from playwright.sync_api import Browser, BrowserContext, Locator, Page, expect, sync_playwright
from pytest_django.live_server_helper import LiveServer

DEBIAN_CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
SCREENSHOTS = ARTIFACTS / "screenshots"
FAILURES = ARTIFACTS / "failures"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 360, "height": 740}
# How long a step may wait for the page before it fails. The slowest honest wait is a
# classification by the live server (a fraction of a second, a few seconds when it
# loads the model on a CPU that other processes are keeping busy); a minute leaves a
# wide margin, and costs nothing when the page is ready sooner.
TIMEOUT_MS = 60_000

PHOTOS = {
    "grace_hopper.jpg": Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg",
    "chelsea.png": Path(skimage.__file__).parent / "data" / "chelsea.png",
    "coffee.png": Path(skimage.__file__).parent / "data" / "coffee.png",
}


def chromium_path() -> str | None:
    if DEBIAN_CHROMIUM.is_file():
        return str(DEBIAN_CHROMIUM)
    return shutil.which("chromium")


def running_in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_chromium() -> str:
    """The browser's path; otherwise skip the test, or fail it in CI."""
    path = chromium_path()
    if path is not None:
        return path
    reason = (
        "CHROMIUM NOT FOUND: the end-to-end browser tests did not run. Install it with "
        "`scripts/ensure-chromium` (Debian's `chromium` package, as root)."
    )
    if running_in_ci():
        pytest.fail(f"{reason} CI is set, so a missing browser is a failure.", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    """One Chromium for this folder's tests, closed after them so that the tests outside
    it run without Playwright's event loop."""
    path = require_chromium()
    with pytest.MonkeyPatch.context() as patch, sync_playwright() as playwright:
        # Playwright's sync API keeps an event loop running in this thread, and Django
        # refuses database calls wherever a loop runs; here they are plain sync calls
        # made between browser steps, so the check is switched off while it lives.
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        chromium = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def live_server(request) -> Iterator[LiveServer]:
    """pytest-django's live server, started with an off-site MEDIA_URL: its media handler
    needs one, and this project has none (images go out only through the views that
    check ownership). A URL with a host makes that handler pass every request on."""
    address = (
        request.config.getvalue("liveserver")
        or os.getenv("DJANGO_LIVE_TEST_SERVER_ADDRESS")
        or "localhost"
    )
    with override_settings(MEDIA_URL="http://media.invalid/"):
        server = LiveServer(address)
    yield server
    server.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call":
        item.e2e_failed = report.failed
    return report


@pytest.fixture
def new_context(request, browser, live_server, transactional_db) -> Iterator:
    """Opens browser contexts (separate cookie jars: one per person) on the live server.
    After a failure, each open page is saved to test-artifacts/failures/ as it was."""
    contexts: list[BrowserContext] = []
    expect.set_options(timeout=TIMEOUT_MS)

    def open_context(*, user=None, javascript: bool = True) -> BrowserContext:
        context = browser.new_context(
            viewport=DESKTOP, base_url=live_server.url, java_script_enabled=javascript
        )
        context.set_default_timeout(TIMEOUT_MS)
        if user is not None:
            _log_in(context, user, live_server.url)
        contexts.append(context)
        return context

    yield open_context
    if getattr(request.node, "e2e_failed", False):
        FAILURES.mkdir(parents=True, exist_ok=True)
        pages = [page for context in contexts for page in context.pages]
        for n, page in enumerate(pages):
            page.screenshot(path=FAILURES / f"{request.node.name}-{n}.png", full_page=True)
    for context in contexts:
        context.close()


def _log_in(context: BrowserContext, user, url: str) -> None:
    """A session made on the server, handed to the browser: the login form itself has
    its own test."""
    client = Client()
    client.force_login(user)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    context.add_cookies([{"name": cookie.key, "value": cookie.value, "url": url}])


@pytest.fixture
def page(new_context) -> Page:
    return new_context().new_page()


@pytest.fixture
def alice_page(new_context, alice) -> Page:
    return new_context(user=alice).new_page()


@pytest.fixture
def photos() -> dict[str, Path]:
    return PHOTOS


# Waiting for the page, the tests use `expect` and one-off `evaluate` calls only, never
# `page.wait_for_function`: when its predicate is not true at once, Playwright polls it
# with `eval` from the page's own timers, which the site's Content-Security-Policy (no
# 'unsafe-eval') refuses. That would pass on a quiet machine, where the page is ready at
# the first look, and fail on a busy one. The pages stay under their real policy here.


def _wait_until_loaded(image: Locator) -> None:
    """Until the <img> has finished: loaded and decoded, or broken."""
    expect(image).to_have_js_property("complete", True)


def screenshot_at_both_widths(page: Page, name: str) -> dict[int, int]:
    """Full-page screenshots at desktop and phone width, saved under
    test-artifacts/screenshots/; returns {viewport width: the page's scroll width}."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    scroll_widths = {}
    for label, viewport in (("desktop", DESKTOP), ("360px", PHONE)):
        page.set_viewport_size(viewport)
        # Every image in view has arrived (or failed) before the picture is taken.
        for image in page.locator("img").all():
            if image.evaluate("(img) => img.getBoundingClientRect().top < window.innerHeight"):
                _wait_until_loaded(image)
        page.screenshot(path=SCREENSHOTS / f"{name}-{label}.png", full_page=True)
        scroll_widths[viewport["width"]] = page.evaluate("document.documentElement.scrollWidth")
    page.set_viewport_size(DESKTOP)
    return scroll_widths


def image_shown(image: Locator) -> tuple[int, int]:
    """Waits until the <img> has finished loading; returns its natural size as the browser
    sees it, EXIF orientation applied. A picture the browser could not show fails here."""
    _wait_until_loaded(image)
    width, height = image.evaluate("(img) => [img.naturalWidth, img.naturalHeight]")
    assert width > 0 and height > 0, f"the browser could not show the picture of {image}"
    return width, height
