from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.template.defaultfilters import filesizeformat

from recognition.orphans import MIN_AGE_SECONDS, orphans_find, orphans_remove


class Command(BaseCommand):
    help = (
        "Remove files under MEDIA_ROOT/images and MEDIA_ROOT/thumbnails that no stored image "
        f"refers to (left by interrupted uploads), once older than {MIN_AGE_SECONDS // 60} "
        "minutes. Stored images whose file is missing are reported, never deleted."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="list what would be removed; remove nothing"
        )

    def handle(self, *args: Any, dry_run: bool, **options: Any) -> str:
        root = Path(settings.MEDIA_ROOT)
        scan = orphans_find()
        size = filesizeformat(scan.orphan_bytes)
        for stored in scan.missing:
            self.stderr.write(f"missing file: {stored.path} (image {stored.sha256})")
        if dry_run:
            for path in scan.orphans:
                self.stdout.write(f"would remove {path.relative_to(root)}")
            done = f"Would remove {len(scan.orphans)} orphan files ({size})"
        else:
            removed = orphans_remove(scan)
            for path in removed:
                self.stdout.write(f"removed {path.relative_to(root)}")
            done = f"Removed {len(removed)} orphan files ({size})"
        return (
            f"{done}; {len(scan.recent)} recent unreferenced files left alone; "
            f"{len(scan.missing)} stored images with a missing file."
        )
