from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.template.defaultfilters import filesizeformat

from recognition.orphans import MIN_AGE_SECONDS, orphans_find, orphans_remove
from recognition.storage import StorageError


class Command(BaseCommand):
    help = (
        "Remove image and thumbnail files (on the local disk, or in the bucket when "
        "RECOGNITION_S3_BUCKET is set) that no stored image refers to (left by interrupted "
        f"uploads), once older than {MIN_AGE_SECONDS // 60} minutes. Stored images whose "
        "file is missing are reported, never deleted."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="list what would be removed; remove nothing"
        )

    def handle(self, *args: Any, dry_run: bool, **options: Any) -> str:
        try:
            scan = orphans_find()
        except StorageError as exc:
            raise CommandError(f"The file storage cannot be listed: {exc.strerror}") from exc
        size = filesizeformat(scan.orphan_bytes)
        for stored in scan.missing:
            self.stderr.write(f"missing file: {stored.path} (image {stored.sha256})")
        if dry_run:
            for file in scan.orphans:
                self.stdout.write(f"would remove {file.name}")
            done = f"Would remove {len(scan.orphans)} orphan files ({size})"
        else:
            removed = orphans_remove(scan)
            for file in removed:
                self.stdout.write(f"removed {file.name}")
            done = f"Removed {len(removed)} orphan files ({size})"
        return (
            f"{done}; {len(scan.recent)} recent unreferenced files left alone; "
            f"{len(scan.missing)} stored images with a missing file."
        )
