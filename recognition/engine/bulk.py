"""Classify many image files from disk: find them, decode them, classify them in batches.

The classify command is a thin shell around this; nothing here knows about Django.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from .defaults import DEFAULT_MAX_PIXELS
from .images import ACCEPTED_EXTENSIONS, ImageRejected, decode_image
from .classifier import Recognition, Classifier


@dataclass(frozen=True)
class Source:
    path: Path
    problem: str | None = None  # known before reading: a missing path, an unlistable folder


@dataclass(frozen=True)
class FileRecognition:
    path: Path
    recognition: Recognition | None = None
    error: str | None = None


def find_images(paths: Iterable[Path]) -> list[Source]:
    """Files as given (whatever their extension: the user named them), and the images
    inside folders, recursively, in a stable sorted order."""
    sources: list[Source] = []
    for path in paths:
        path = Path(path)
        if path.is_dir():
            sources.extend(_walk(path))
        elif path.exists():
            sources.append(Source(path))
        else:
            sources.append(Source(path, problem="does not exist"))
    return sources


def _walk(folder: Path) -> Iterator[Source]:
    # os.walk reports a folder it cannot list through onerror, skips it and carries on.
    unlistable: list[OSError] = []
    for root, dirnames, filenames in os.walk(folder, onerror=unlistable.append):
        yield from _unlistable_sources(unlistable)
        # Hidden entries are skipped: the "._photo.jpg" files macOS leaves on shared
        # drives carry an image extension but hold no image.
        dirnames[:] = sorted(name for name in dirnames if not name.startswith("."))
        for name in sorted(filenames):
            if not name.startswith(".") and name.lower().endswith(ACCEPTED_EXTENSIONS):
                yield Source(Path(root) / name)
    yield from _unlistable_sources(unlistable)


def _unlistable_sources(errors: list[OSError]) -> Iterator[Source]:
    while errors:
        error = errors.pop(0)
        yield Source(Path(error.filename), problem=f"cannot be listed ({error.strerror})")


def classify_files(
    classifier: Classifier,
    sources: Sequence[Source],
    *,
    top_k: int,
    batch_size: int,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Iterator[FileRecognition]:
    """One result per source, in order, a batch at a time, so no more than `batch_size`
    decoded pictures are in memory. A file that cannot be read or decoded gets an error
    and the rest carry on; ModelUnavailable propagates, as no file can succeed without
    a model."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    for start in range(0, len(sources), batch_size):
        chunk = sources[start : start + batch_size]
        pictures: dict[int, Image.Image] = {}
        errors: dict[int, str] = {}
        for position, source in enumerate(chunk):
            try:
                pictures[position] = _read_and_decode(source, max_pixels)
            except _Unusable as exc:
                errors[position] = str(exc)
        recognitions = classifier.classify(list(pictures.values()), top_k=top_k)
        by_position = dict(zip(pictures, recognitions))
        for position, source in enumerate(chunk):
            yield FileRecognition(
                source.path,
                recognition=by_position.get(position),
                error=errors.get(position),
            )


class _Unusable(Exception):
    pass


def _read_and_decode(source: Source, max_pixels: int) -> Image.Image:
    if source.problem:
        raise _Unusable(source.problem)
    try:
        data = source.path.read_bytes()
    except OSError as exc:
        raise _Unusable(f"cannot be read ({exc.strerror or exc})") from None
    try:
        return decode_image(data, max_pixels=max_pixels).image
    except ImageRejected as exc:
        raise _Unusable(exc.message) from None
