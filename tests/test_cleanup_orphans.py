"""`manage.py cleanup_orphans`: removes the image files nothing refers to (what an
interrupted upload leaves), never a referenced one, and reports rows without a file.
The same on the local disk and in the bucket (the storage is listed, never a folder)."""

from __future__ import annotations

import io
import os
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.utils import timezone

from recognition import orphans, storage
from recognition.models import StoredImage
from recognition.services import upload_classify
from tests.web_fixtures import (
    as_upload,
    bucket_keys,
    local_disk_only,
    media_files,
    needs_object_store,
)

pytestmark = pytest.mark.django_db


def _file(name: str) -> str:
    storage.save(name, b"left behind")
    return name


@pytest.fixture
def two_hours_later(monkeypatch):
    """The clock the scan reads, moved on: every file written so far is old (an object
    store's dates cannot be set back, so the clock goes forward instead)."""
    later = timezone.now() + timedelta(hours=2)
    monkeypatch.setattr(orphans, "_now", lambda: later)


def _cleanup(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("cleanup_orphans", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def kept(alice, make_image) -> tuple[StoredImage, str, str]:
    """An uploaded image, with its thumbnail: only references keep them."""
    stored = upload_classify(user=alice, file=as_upload(make_image())).upload.stored_image
    thumbnail = _file(storage.thumbnail_name(stored.sha256))
    return stored, stored.path, thumbnail


def test_it_removes_image_and_thumbnail_files_no_stored_image_refers_to(kept, two_hours_later):
    _, image, thumbnail = kept
    orphan_image = _file("images/ab/cd/" + "ab" * 32 + ".jpg")
    orphan_thumbnail = _file("thumbnails/ab/" + "ab" * 32 + ".jpg")

    out, err = _cleanup()

    assert not storage.exists(orphan_image) and not storage.exists(orphan_thumbnail)
    assert storage.exists(image) and storage.exists(thumbnail)
    assert "removed images/ab/cd/" in out
    assert out.strip().splitlines()[-1].startswith("Removed 2 orphan files (22")
    assert err == ""


def test_a_dry_run_lists_the_orphans_and_removes_nothing(kept, two_hours_later):
    orphan = _file("images/ef/01/" + "ef" * 32 + ".png")

    out, _ = _cleanup("--dry-run")

    assert storage.exists(orphan)
    assert f"would remove {orphan}" in out
    assert out.strip().splitlines()[-1].startswith("Would remove 1 orphan files")


def test_it_leaves_recent_unreferenced_files_to_uploads_in_flight():
    fresh_image = _file("images/12/34/" + "12" * 32 + ".jpg")

    out, _ = _cleanup()

    assert storage.exists(fresh_image)
    assert "Removed 0 orphan files" in out
    assert "1 recent unreferenced files left alone" in out


@local_disk_only
def test_it_removes_stale_temporary_files_of_interrupted_local_writes():
    # Only the local disk writes through temporary files; an object appears whole.
    media = Path(settings.MEDIA_ROOT)
    stale, fresh = media / "images/12/34/.abc.jpg.x1y2.tmp", media / "images/12/34/.def.jpg.z3.tmp"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half")
    fresh.write_bytes(b"half")
    two_hours_ago = time.time() - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))

    out, _ = _cleanup()

    assert not stale.exists() and fresh.exists()
    assert "Removed 1 orphan files" in out
    assert "1 recent unreferenced files left alone" in out


def test_it_reports_stored_images_whose_file_is_missing_and_keeps_them(kept, two_hours_later):
    stored, image, _ = kept
    storage.delete(image)

    out, err = _cleanup()

    assert f"missing file: {stored.path}" in err
    assert "1 stored images with a missing file" in out
    assert StoredImage.objects.filter(pk=stored.pk).exists()


def test_it_reports_nothing_to_do_on_a_clean_storage(kept, two_hours_later):
    out, err = _cleanup()

    assert out.strip() == (
        "Removed 0 orphan files (0\xa0bytes); 0 recent unreferenced files left alone; "
        "0 stored images with a missing file."
    )
    assert err == ""


def test_a_file_adopted_by_an_upload_after_the_scan_is_not_removed(
    alice, make_image, two_hours_later, django_capture_on_commit_callbacks
):
    from recognition.orphans import orphans_find, orphans_remove
    from recognition.services import upload_delete

    data = make_image()
    first = upload_classify(user=alice, file=as_upload(data)).upload
    image = first.stored_image.path
    with django_capture_on_commit_callbacks(execute=True):
        upload_delete(user=alice, upload_id=first.pk)
    assert media_files() == []
    # As if a killed upload had left the file but never committed its rows.
    storage.save(image, data)
    scan = orphans_find()
    assert [file.name for file in scan.orphans] == [image]

    upload_classify(user=alice, file=as_upload(data))  # finds the file, keeps it, commits

    assert orphans_remove(scan) == []
    assert storage.exists(image) and StoredImage.objects.filter(path=image).exists()


@needs_object_store
def test_it_lists_the_bucket_itself_not_a_local_folder(kept, two_hours_later):
    orphan = _file("images/ab/cd/" + "ab" * 32 + ".jpg")
    assert orphan in bucket_keys()

    out, _ = _cleanup()

    assert bucket_keys() == sorted(kept[1:])
    assert f"removed {orphan}" in out
    assert not Path(settings.MEDIA_ROOT).exists()  # nothing ever touched the local disk
