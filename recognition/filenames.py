"""Make a user-supplied filename safe to store and show: it is only ever displayed."""

from __future__ import annotations

import unicodedata

from .models import MAX_FILENAME_LENGTH

FALLBACK_FILENAME = "image"


def clean_filename(name: str | None) -> str:
    """Drop directories, control and formatting characters (NUL, newlines, bidi overrides
    that could disguise an extension) and trim to the column's length, keeping the end."""
    name = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch) not in ("Cc", "Cf", "Cs"))
    name = " ".join(name.split())  # collapse runs of whitespace
    if name in ("", ".", ".."):
        return FALLBACK_FILENAME
    if len(name) > MAX_FILENAME_LENGTH:
        stem, dot, extension = name.rpartition(".")
        if dot and 0 < len(extension) <= 10:
            name = stem[: MAX_FILENAME_LENGTH - len(extension) - 2] + "…." + extension
        else:
            name = name[: MAX_FILENAME_LENGTH - 1] + "…"
    return name
