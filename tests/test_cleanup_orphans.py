"""`manage.py cleanup_orphans`: removes the image files nothing refers to (what an
interrupted upload leaves), never a referenced one, and reports rows without a file."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command

from recognition import storage
from recognition.models import StoredImage
from recognition.services import upload_classify
from tests.web_fixtures import as_upload

pytestmark = pytest.mark.django_db

TWO_HOURS_AGO = time.time() - 7200


def _file(relative: str, *, old: bool = True) -> Path:
    path = Path(settings.MEDIA_ROOT) / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"left behind")
    if old:
        os.utime(path, (TWO_HOURS_AGO, TWO_HOURS_AGO))
    return path


def _cleanup(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("cleanup_orphans", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def kept(alice, make_image) -> tuple[StoredImage, Path, Path]:
    """An uploaded image, with its thumbnail, both old: only references keep them."""
    stored = upload_classify(user=alice, file=as_upload(make_image())).upload.stored_image
    thumbnail = _file(storage.thumbnail_relative_path(stored.sha256))
    image = storage.media_path(stored.path)
    os.utime(image, (TWO_HOURS_AGO, TWO_HOURS_AGO))
    return stored, image, thumbnail


def test_it_removes_image_and_thumbnail_files_no_stored_image_refers_to(kept):
    _, image, thumbnail = kept
    orphan_image = _file("images/ab/cd/" + "ab" * 32 + ".jpg")
    orphan_thumbnail = _file("thumbnails/ab/" + "ab" * 32 + ".jpg")

    out, err = _cleanup()

    assert not orphan_image.exists() and not orphan_thumbnail.exists()
    assert image.exists() and thumbnail.exists()
    assert "removed images/ab/cd/" in out
    assert out.strip().splitlines()[-1].startswith("Removed 2 orphan files (22")
    assert err == ""


def test_a_dry_run_lists_the_orphans_and_removes_nothing(kept):
    orphan = _file("images/ef/01/" + "ef" * 32 + ".png")

    out, _ = _cleanup("--dry-run")

    assert orphan.exists()
    assert f"would remove images/ef/01/{orphan.name}" in out
    assert out.strip().splitlines()[-1].startswith("Would remove 1 orphan files")


def test_it_removes_stale_temporary_files_and_leaves_recent_files_to_uploads_in_flight():
    stale = _file("images/12/34/.abc.jpg.x1y2.tmp")
    fresh_tmp = _file("images/12/34/.def.jpg.z3.tmp", old=False)
    fresh_image = _file("images/12/34/" + "12" * 32 + ".jpg", old=False)

    out, _ = _cleanup()

    assert not stale.exists()
    assert fresh_tmp.exists() and fresh_image.exists()
    assert "Removed 1 orphan files" in out
    assert "2 recent unreferenced files left alone" in out


def test_it_reports_stored_images_whose_file_is_missing_and_keeps_them(kept):
    stored, image, _ = kept
    image.unlink()

    out, err = _cleanup()

    assert f"missing file: {stored.path}" in err
    assert "1 stored images with a missing file" in out
    assert StoredImage.objects.filter(pk=stored.pk).exists()


def test_it_reports_nothing_to_do_on_a_clean_media_folder(kept):
    out, err = _cleanup()

    assert out.strip() == (
        "Removed 0 orphan files (0\xa0bytes); 0 recent unreferenced files left alone; "
        "0 stored images with a missing file."
    )
    assert err == ""


def test_a_file_adopted_by_an_upload_after_the_scan_is_not_removed(alice, make_image):
    from recognition.orphans import orphans_find, orphans_remove

    from recognition.services import upload_delete

    data = make_image()
    first = upload_classify(user=alice, file=as_upload(data)).upload
    stored = first.stored_image
    image = storage.media_path(stored.path)
    kept_bytes = image.read_bytes()
    upload_delete(user=alice, upload_id=first.pk)
    # As if a killed upload had left the file but never committed its rows.
    storage.write_atomically(image, kept_bytes)
    os.utime(image, (TWO_HOURS_AGO, TWO_HOURS_AGO))
    scan = orphans_find()
    assert image in scan.orphans

    upload_classify(user=alice, file=as_upload(data))  # finds the file, keeps it, commits

    assert orphans_remove(scan) == []
    assert image.exists() and StoredImage.objects.filter(sha256=stored.sha256).exists()
