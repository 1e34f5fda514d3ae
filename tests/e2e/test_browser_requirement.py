"""Where the browser tests find Chromium, and what happens without it: a loud skip on a
developer's machine, a failure in CI."""

from __future__ import annotations

import pytest

from tests.e2e import conftest


@pytest.fixture
def no_chromium(monkeypatch, tmp_path):
    monkeypatch.setattr(conftest, "DEBIAN_CHROMIUM", tmp_path / "no-chromium")
    monkeypatch.setenv("PATH", str(tmp_path))


def test_debians_chromium_is_found_first_then_one_on_the_path(monkeypatch, tmp_path, no_chromium):
    assert conftest.chromium_path() is None

    fake = tmp_path / "chromium"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    assert conftest.chromium_path() == str(fake)

    debian = tmp_path / "usr-bin-chromium"
    debian.write_text("")
    monkeypatch.setattr(conftest, "DEBIAN_CHROMIUM", debian)
    assert conftest.chromium_path() == str(debian)


def test_without_chromium_the_browser_tests_are_skipped_with_a_loud_reason(monkeypatch, no_chromium):
    monkeypatch.delenv("CI", raising=False)

    with pytest.raises(pytest.skip.Exception, match="CHROMIUM NOT FOUND.*scripts/ensure-chromium"):
        conftest.require_chromium()


@pytest.mark.parametrize("value", ["true", "1", "yes"])
def test_in_ci_a_missing_chromium_fails_the_browser_tests_instead(monkeypatch, no_chromium, value):
    monkeypatch.setenv("CI", value)

    with pytest.raises(pytest.fail.Exception, match="CHROMIUM NOT FOUND.*CI is set"):
        conftest.require_chromium()
