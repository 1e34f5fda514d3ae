"""Export of classification history: one row per upload, as CSV or JSON Lines, streamed.

The API (a user's own uploads, through the selector) and the admin (every user's, for
staff) both build their download here, so the columns, the formula guard and the
streaming are the same for both.

Memory stays constant whatever the history's size: uploads are read from the database
`CHUNK_SIZE` at a time (with their predictions prefetched per chunk), each row is
encoded as it comes, and the text goes out in pieces of about `PIECE_CHARS`.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from django.utils import timezone

from . import published_models
from .engine.manifest import ArtifactError, Manifest
from .corrections import correction_of
from .models import MAX_STORED_PREDICTIONS, Correction, Upload
from .selectors import RANKED_PREDICTIONS
from .storage import StorageError

CHUNK_SIZE = 500
PIECE_CHARS = 64 * 1024


@dataclass(frozen=True)
class ExportFormat:
    content_type: str
    extension: str


FORMATS = {
    "csv": ExportFormat("text/csv; charset=utf-8", "csv"),
    "jsonl": ExportFormat("application/x-ndjson", "jsonl"),
}
DEFAULT_FORMAT = "csv"

# A spreadsheet takes a cell starting with one of these for a formula (OWASP's list).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

IMAGE_COLUMNS = ["sha256", "width", "height", "format", "bytes"]
MODEL_COLUMNS = ["model_name", "model_version", "weights_sha256"]
CORRECTION_COLUMNS = ["correction_label", "correction_index", "correction_status"]
PREDICTION_COLUMNS = [
    f"{field}_{rank}"
    for rank in range(1, MAX_STORED_PREDICTIONS + 1)
    for field in ("label", "index", "score")
]


def export_response(
    uploads: QuerySet[Upload],
    *,
    format: str,
    with_username: bool = False,
    name: str = "classifications",
) -> StreamingHttpResponse:
    """The download of `uploads` in `format` ("csv" or "jsonl"). Nothing is read from
    the database until the response is sent. `with_username` adds the owner's name, for
    staff exports of every user's uploads."""
    encoding = FORMATS[format]
    response = StreamingHttpResponse(
        _pieces(export_lines(uploads, format=format, with_username=with_username)),
        content_type=encoding.content_type,
    )
    filename = f"{name}-{timezone.localdate().isoformat()}.{encoding.extension}"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    # Someone's whole history: no shared cache keeps a copy.
    response["Cache-Control"] = "private, no-store"
    return response


def staff_uploads(uploads: QuerySet[Upload]) -> QuerySet[Upload]:
    """Any users' uploads (the admin's selection) with what a row needs, in the
    history's order."""
    return (
        uploads.select_related("user", "stored_image", "classification", "correction")
        .prefetch_related(RANKED_PREDICTIONS)
        .order_by("-last_uploaded_at", "-id")
    )


def export_lines(
    uploads: QuerySet[Upload], *, format: str, with_username: bool = False
) -> Iterator[str]:
    """The header (CSV only) and one line per upload."""
    records = export_records(uploads, with_username=with_username)
    if format == "jsonl":
        # No formula guard: a JSON string is data to whatever parses it, never a formula,
        # and a spreadsheet does not open JSON Lines as cells. ASCII-only escapes keep
        # every line one line, even for U+2028 in a filename.
        return (json.dumps(record, separators=(",", ":")) + "\n" for record in records)
    return _csv_lines(records, with_username=with_username)


def export_records(
    uploads: QuerySet[Upload], *, with_username: bool = False
) -> Iterator[dict[str, Any]]:
    """One dict per upload, read in chunks. The model's weights hash comes from its
    manifest, read once per model version per export."""
    weights = _WeightsHashes()
    for upload in uploads.iterator(chunk_size=CHUNK_SIZE):
        image, classification = upload.stored_image, upload.classification
        name, version = classification.model_name, classification.model_version
        record: dict[str, Any] = {"username": upload.user.get_username()} if with_username else {}
        record.update(
            {
                "id": upload.pk,
                "filename": upload.original_filename,
                "created_at": upload.created_at.isoformat(),
                "last_uploaded_at": upload.last_uploaded_at.isoformat(),
                "image": {
                    "sha256": image.sha256,
                    "width": image.width,
                    "height": image.height,
                    "format": image.format,
                    "bytes": image.byte_size,
                },
                "model": {
                    "name": name,
                    "version": version,
                    "weights_sha256": weights.of(name, version),
                },
                "predictions": [
                    {"rank": p.rank, "label": p.label, "index": p.index, "score": p.score}
                    for p in classification.predictions.all()
                ],
                "correction": _correction_record(correction_of(upload)),
            }
        )
        yield record


def _correction_record(correction: Correction | None) -> dict[str, Any] | None:
    if correction is None:
        return None
    return {
        "label": correction.label,
        "index": correction.index,
        "status": correction.status,
        "created_at": correction.created_at.isoformat(),
    }


def csv_header(*, with_username: bool = False) -> list[str]:
    head = ["username"] if with_username else []
    upload = ["id", "filename", "created_at", "last_uploaded_at"]
    return head + upload + IMAGE_COLUMNS + MODEL_COLUMNS + PREDICTION_COLUMNS + CORRECTION_COLUMNS


def csv_cells(record: dict[str, Any], *, with_username: bool = False) -> list[Any]:
    image, model = record["image"], record["model"]
    cells: list[Any] = [record["username"]] if with_username else []
    cells += [record["id"], record["filename"], record["created_at"], record["last_uploaded_at"]]
    cells += [image[column] for column in IMAGE_COLUMNS]
    cells += [model["name"], model["version"], model["weights_sha256"]]
    predictions = record["predictions"][:MAX_STORED_PREDICTIONS]
    for prediction in predictions:
        cells += [prediction["label"], prediction["index"], prediction["score"]]
    cells += [""] * 3 * (MAX_STORED_PREDICTIONS - len(predictions))
    correction = record["correction"] or {}
    cells += [correction.get(name, "") for name in ("label", "index", "status")]
    return [guard_formula(cell) for cell in cells]


def guard_formula(cell: Any) -> Any:
    """A text cell a spreadsheet would run as a formula, made text with a leading quote;
    numbers stay numbers."""
    if isinstance(cell, str) and cell.startswith(FORMULA_STARTS):
        return "'" + cell
    return cell


class _Line:
    """A file for csv.writer that hands back each line instead of keeping it."""

    def write(self, text: str) -> str:
        return text


def _csv_lines(records: Iterable[dict[str, Any]], *, with_username: bool) -> Iterator[str]:
    writer = csv.writer(_Line())
    yield writer.writerow(csv_header(with_username=with_username))
    for record in records:
        yield writer.writerow(csv_cells(record, with_username=with_username))


def _pieces(lines: Iterable[str]) -> Iterator[str]:
    """Lines joined into pieces of about PIECE_CHARS: one write per row would make a
    100 000-row export 100 000 socket writes."""
    piece: list[str] = []
    size = 0
    for line in lines:
        piece.append(line)
        size += len(line)
        if size >= PIECE_CHARS:
            yield "".join(piece)
            piece, size = [], 0
    if piece:
        yield "".join(piece)


class _WeightsHashes:
    """The weights SHA-256 of each model version, from its manifest in this node's models
    directory or, failing that, the object store; "" when neither has it (a build since
    deleted). Each version is looked up once."""

    def __init__(self) -> None:
        self._known: dict[tuple[str, str], str] = {}

    def of(self, name: str, version: str) -> str:
        if (name, version) not in self._known:
            manifest = _find_manifest(f"{name}-{version}")
            self._known[name, version] = manifest.weights_sha256 if manifest else ""
        return self._known[name, version]


def _find_manifest(key: str) -> Manifest | None:
    try:
        manifest = Manifest.read(Path(settings.RECOGNITION_MODELS_DIR) / key)
    except ArtifactError:
        try:
            manifest = published_models.read_manifest(key)
        except StorageError:  # the store is away: the export goes on without the hash
            manifest = None
    return manifest if manifest is not None and manifest.key == key else None
