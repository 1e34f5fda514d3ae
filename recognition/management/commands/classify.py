import argparse
import json
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from recognition.configured_classifier import get_classifier
from recognition.engine.bulk import FileRecognition, classify_files, find_images
from recognition.engine.classifier import ModelUnavailable
from recognition.engine.defaults import DEFAULT_MAX_BATCH, DEFAULT_TOP_K

LONGEST_LABEL_SHOWN = 30


class Command(BaseCommand):
    requires_system_checks = []  # an engine command: it needs no database or URLs
    help = (
        "Classify image files, and the images in folders (recursively), with the active "
        "model. Prints a table, or one JSON object per line with --json."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("paths", nargs="+", type=Path, metavar="PATH")
        parser.add_argument(
            "--top-k", type=_positive_int, default=DEFAULT_TOP_K, help="labels per image"
        )
        parser.add_argument(
            "--json", action="store_true", help="one JSON object per line on stdout"
        )
        parser.add_argument(
            "--batch-size",
            type=_positive_int,
            default=DEFAULT_MAX_BATCH,
            help="images per forward pass",
        )

    def handle(self, *args: str, **options: Any) -> None:
        classifier = get_classifier()
        try:
            # Fail before reading any file when there is no usable model.
            identity = classifier.identity()
            categories = classifier.manifest().categories
        except ModelUnavailable as exc:
            raise CommandError(str(exc)) from None

        sources = find_images(options["paths"])
        if not sources:
            raise CommandError("No image files found in the given folders.")
        format_row: Callable[[FileRecognition], str] = _json_line
        if not options["json"]:
            # Widths are known before the first result, so rows can stream out aligned.
            path_width = max(len(str(source.path)) for source in sources)
            label_width = min(max(map(len, categories)), LONGEST_LABEL_SHOWN)
            format_row = partial(_table_row, path_width=path_width, label_width=label_width)
            columns = min(options["top_k"], len(categories))
            self.stdout.write(_table_header(path_width, label_width, columns))

        failed = 0
        show_progress = len(sources) > 1 and options["verbosity"] > 0
        # tqdm draws with carriage returns, which Django's line-ending wrapper would break.
        progress_file = getattr(self.stderr, "_out", sys.stderr)
        with tqdm(
            total=len(sources), disable=not show_progress, file=progress_file, unit="image"
        ) as bar:
            try:
                for result in classify_files(
                    classifier,
                    sources,
                    top_k=options["top_k"],
                    batch_size=options["batch_size"],
                    max_pixels=settings.RECOGNITION_MAX_PIXELS,
                ):
                    with tqdm.external_write_mode():
                        self.stdout.write(format_row(result))
                    failed += result.error is not None
                    bar.update()
            except ModelUnavailable as exc:
                raise CommandError(str(exc)) from None

        if failed:
            raise CommandError(f"{failed} of {len(sources)} files could not be classified.")
        if options["verbosity"] > 0:
            self.stderr.write(
                f"Classified {len(sources)} images with {identity.name} "
                f"(version {identity.version})."
            )


def _json_line(result: FileRecognition) -> str:
    return json.dumps(result_as_json(result), ensure_ascii=False)


def result_as_json(result: FileRecognition) -> dict:
    if result.recognition is None:
        return {"path": str(result.path), "error": result.error}
    return {
        "path": str(result.path),
        "model": result.recognition.model.name,
        "model_version": result.recognition.model.version,
        "predictions": [
            {"label": p.label, "index": p.index, "score": p.score}
            for p in result.recognition.predictions
        ],
    }


def _table_header(path_width: int, label_width: int, top_k: int) -> str:
    columns = [f"TOP {rank}".ljust(label_width + 7) for rank in range(1, top_k + 1)]
    return f"{'PATH'.ljust(path_width)}  {'  '.join(columns)}".rstrip()


def _table_row(result: FileRecognition, path_width: int, label_width: int) -> str:
    path = str(result.path).ljust(path_width)
    if result.recognition is None:
        return f"{path}  error: {result.error}"
    cells = [
        f"{p.score:6.1%} {_clip(p.label, label_width).ljust(label_width)}"
        for p in result.recognition.predictions
    ]
    return f"{path}  {'  '.join(cells)}".rstrip()


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {number}")
    return number
