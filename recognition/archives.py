"""ZIP archives for bulk import, read as hostile input.

`inspect` reads the central directory only (nothing is extracted, nothing is written to
the file system) and either refuses the whole archive (`ArchiveRejected`: not a ZIP,
too many entries, too much once unpacked, a zip bomb, nothing in it) or lists its files,
each usable or refused with a per-item code (an archive whose every file is
password-protected is refused whole). `read_member` then reads one entry's bytes,
counting them as they come out, so a header that lies about a size cannot make it hold
more than the per-image cap. Pass it the same open file for every entry of an archive:
each thread keeps the last archive it parsed, so the directory is parsed once, not once
per entry. A `Member` rebuilt from its fields (after a restart) reads the same.

Skipped without a trace: directories, and the hidden files archivers add next to the
pictures (`__MACOSX/` resource forks, `._name`, `.DS_Store`): a Finder-made archive has
one `._` file per picture, and reporting each as a refusal would double the failures of
an import that went right. Only stored and deflate entries are read: they are what every
common archiver writes, and zipfile's bzip2 and LZMA readers do not bound how much one
read call unpacks.
"""

from __future__ import annotations

import re
import stat
import struct
import threading
import unicodedata
import weakref
import zipfile
import zlib
from dataclasses import dataclass
from typing import BinaryIO

from django.conf import settings
from django.template.defaultfilters import filesizeformat

from .engine.images import ACCEPTED_EXTENSIONS
from .errors import ServiceError, too_large_message
from .filenames import clean_filename

NESTED_ARCHIVE_EXTENSIONS = (".zip", ".tar", ".gz", ".tgz", ".7z", ".rar", ".bz2", ".xz")
READABLE_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
CHUNK_BYTES = 64 * 1024
# The central directory is read into memory before its entries are counted; real ones
# take well under 300 bytes per entry (name, extra fields, comment).
DIRECTORY_BYTES_PER_ENTRY = 8 * 1024

# The fixed parts of the records that locate the central directory (APPNOTE 4.3.14-16).
_END = struct.Struct("<4s4H2LH")
_END64_LOCATOR = struct.Struct("<4sLQL")
_END64 = struct.Struct("<4sQ2H2L4Q")
_ENTRY_SIZE = 46  # a central directory file header, before its name, extra field, comment
_ENTRY_LENGTHS = struct.Struct("<3H")  # ... whose lengths are at byte 28
_DRIVE = re.compile(r"^[A-Za-z]:")
# One code for every "this import is too big", whether the archive file itself (checked
# with the request, recognition/imports.py) or what it would unpack to.
TOO_LARGE = "import_too_large"


class ArchiveRejected(ServiceError):
    """The whole archive is refused before anything in it is read."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.status = 413 if code == TOO_LARGE else 400


class ArchiveMemberRefused(ServiceError):
    """One entry cannot be imported; the rest of the archive can."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Member:
    position: int  # 0-based order in the central directory
    name: str  # what zipfile.open takes
    filename: str  # for display: the base name, cleaned
    size: int  # declared uncompressed size
    problem_code: str | None = None
    problem_message: str | None = None


UNREADABLE = (
    "The file is not a readable ZIP archive: it is damaged, truncated or not a ZIP file."
)
DAMAGED_MEMBER = (
    "This file in the archive is damaged (its data is cut short or does not match its "
    "checksum)."
)
PROBLEMS = {
    "unsafe_name": (
        "This file's name in the archive is not a safe path (absolute, with '..' or with "
        "control characters)."
    ),
    "symlink": "This entry is a symbolic link, not a picture.",
    "encrypted": (
        "This file is password-protected in the archive; make the archive without a password."
    ),
    "nested_archive": (
        "Archives inside the archive are not opened; put their pictures in the outer archive."
    ),
    "not_an_image": (
        "This file is not a picture in a supported format (JPEG, PNG, GIF, WebP, BMP, TIFF)."
    ),
    "archive_member_unreadable": (
        "This file is compressed with a method the service does not read; make the archive "
        "with standard ZIP compression (deflate) or none."
    ),
}


def limits_from_settings() -> dict[str, int]:
    return {
        "max_entries": settings.RECOGNITION_IMPORT_MAX_FILES,
        "max_total_bytes": settings.RECOGNITION_IMPORT_MAX_UNCOMPRESSED_BYTES,
        "max_ratio": settings.RECOGNITION_IMPORT_MAX_RATIO,
        "max_entry_bytes": settings.RECOGNITION_MAX_UPLOAD_BYTES,
    }


def inspect(
    file: BinaryIO, *, max_entries: int, max_total_bytes: int, max_ratio: int, max_entry_bytes: int
) -> list[Member]:
    """Every entry that is not a directory or a hidden file, usable or refused, in order;
    ArchiveRejected for what makes the whole archive unusable."""
    archive = _open(file, max_entries=max_entries)
    entries = archive.infolist()
    if not any(not _is_directory(entry) for entry in entries):
        raise ArchiveRejected("archive_empty", "The archive holds no files.")
    for entry in entries:
        ratio = entry.file_size / max(entry.compress_size, 1)
        if ratio > max_ratio:
            raise ArchiveRejected(
                "archive_bomb",
                f"A file in the archive unpacks to {ratio:,.0f} times its compressed size, over "
                f"the limit of {max_ratio}: it looks like a zip bomb, so nothing was unpacked.",
            )
    total = sum(entry.file_size for entry in entries)
    if total > max_total_bytes:
        raise ArchiveRejected(
            TOO_LARGE,
            f"The archive's files take {filesizeformat(total)} once unpacked; at most "
            f"{filesizeformat(max_total_bytes)} per import is accepted, so split it.",
        )
    members = []
    for position, entry in enumerate(entries):
        if _is_directory(entry) or _is_hidden(entry):
            continue
        code = _problem(entry)
        if code is None and entry.file_size > max_entry_bytes:
            code, message = "too_large", too_large_message(max_entry_bytes)
        else:
            message = PROBLEMS.get(code)
        members.append(
            Member(
                position=position,
                name=entry.filename,
                filename=clean_filename(entry.orig_filename),
                size=entry.file_size,
                problem_code=code,
                problem_message=message,
            )
        )
    # A password-protected archive, not just one such file in it: every item would fail
    # the same way, so the archive is refused whole, saying so once.
    if members and all(member.problem_code == "encrypted" for member in members):
        raise ArchiveRejected(
            "archive_encrypted",
            "The archive is password-protected; make it again without a password.",
        )
    return members


def read_member(file: BinaryIO, member: Member, *, max_entry_bytes: int) -> bytes:
    """The entry's bytes; ArchiveMemberRefused "too_large" as soon as more than
    `max_entry_bytes` come out, and "archive_member_unreadable" for damaged data."""
    try:
        archive = _open(file, max_entries=None)
    except ArchiveRejected:
        raise ArchiveMemberRefused("archive_member_unreadable", DAMAGED_MEMBER) from None
    entries = archive.infolist()
    # By position, not name: an archive may hold two entries of one name.
    entry = entries[member.position] if 0 <= member.position < len(entries) else None
    if entry is None or entry.filename != member.name:
        raise ArchiveMemberRefused(
            "archive_member_unreadable", "This file is no longer in the archive."
        )
    # Refused entries stay refused whoever asks; the size is checked on the bytes below.
    code = _problem(entry)
    if code is not None:
        raise ArchiveMemberRefused(code, PROBLEMS[code])
    chunks, count = [], 0
    try:
        with archive.open(entry) as stream:
            while chunk := stream.read(CHUNK_BYTES):
                count += len(chunk)
                if count > max_entry_bytes:
                    raise ArchiveMemberRefused("too_large", too_large_message(max_entry_bytes))
                chunks.append(chunk)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, ValueError, struct.error):
        raise ArchiveMemberRefused("archive_member_unreadable", DAMAGED_MEMBER) from None
    return b"".join(chunks)


def _problem(entry: zipfile.ZipInfo) -> str | None:
    """The per-entry refusal code, from the central directory alone (size aside)."""
    name = entry.orig_filename  # zipfile cuts its `filename` at a NUL
    path = name.replace("\\", "/")
    if (
        path.startswith("/")
        or _DRIVE.match(path)
        or ".." in path.split("/")
        or any(unicodedata.category(ch) == "Cc" for ch in name)
    ):
        return "unsafe_name"
    if stat.S_ISLNK(entry.external_attr >> 16):
        return "symlink"
    if entry.flag_bits & 0x1:
        return "encrypted"
    lowered = path.lower()
    if lowered.endswith(NESTED_ARCHIVE_EXTENSIONS):
        return "nested_archive"
    if not lowered.endswith(ACCEPTED_EXTENSIONS):
        return "not_an_image"
    if entry.compress_type not in READABLE_METHODS:
        return "archive_member_unreadable"
    return None


def _is_directory(entry: zipfile.ZipInfo) -> bool:
    return entry.is_dir() or stat.S_ISDIR(entry.external_attr >> 16)


def _is_hidden(entry: zipfile.ZipInfo) -> bool:
    parts = entry.orig_filename.replace("\\", "/").split("/")
    return "__MACOSX" in parts[:-1] or parts[-1].startswith(".")


# read_member is called once per entry with the same file; parsing a 10 000-entry central
# directory takes about 60 ms, so each thread keeps the last archive it opened.
_last = threading.local()


def _open(file: BinaryIO, *, max_entries: int | None) -> zipfile.ZipFile:
    """The archive, refused when its central directory holds more than `max_entries`
    entries (counted before zipfile builds an object per entry) or disagrees with itself."""
    cached = getattr(_last, "archive", None)
    if max_entries is None and cached is not None and cached[0]() is file:
        return cached[1]
    start, size, declared = _central_directory(file)
    if max_entries is not None:
        if declared > max_entries:
            raise _too_many(max_entries)
        if size > max_entries * DIRECTORY_BYTES_PER_ENTRY:
            raise ArchiveRejected(
                "archive_unreadable",
                f"The archive's table of contents takes {filesizeformat(size)}, far more than "
                f"{max_entries:,} files need, so it was not read.",
            )
    if _count_entries(file, start, size, limit=max_entries) != declared:
        raise ArchiveRejected("archive_unreadable", UNREADABLE)
    try:
        archive = zipfile.ZipFile(file)
        entries = archive.infolist()
    except (zipfile.BadZipFile, NotImplementedError, ValueError, EOFError, struct.error):
        raise ArchiveRejected("archive_unreadable", UNREADABLE) from None
    if archive.start_dir != start:  # it found another directory than the one counted
        raise ArchiveRejected("archive_unreadable", UNREADABLE)
    _check_extents(entries, start)
    _last.archive = (weakref.ref(file), archive)
    return archive


def release(file: BinaryIO) -> None:
    """Forget this thread's parsed directory of `file`: the parsed archive keeps the file
    object alive (and a worker's in-memory copy of a whole archive with it) until the
    thread opens another one."""
    cached = getattr(_last, "archive", None)
    if cached is not None and cached[0]() is file:
        del _last.archive


def _too_many(max_entries: int) -> ArchiveRejected:
    return ArchiveRejected(
        "archive_too_many_entries",
        f"The archive holds more than {max_entries:,} entries, the most one import accepts; "
        "split it into smaller archives.",
    )


def _central_directory(file: BinaryIO) -> tuple[int, int, int]:
    """Where the central directory starts, its size and the entry count it declares, from
    the end records alone, found the way zipfile finds them."""
    file.seek(0, 2)
    tail_start = max(0, file.tell() - _END.size - 0xFFFF)  # the record, then a comment
    file.seek(tail_start)
    tail = file.read()
    if tail[-_END.size :][:4] == b"PK\x05\x06" and tail[-2:] == b"\0\0":
        at = len(tail) - _END.size  # no archive comment
    else:
        at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < _END.size:
        raise ArchiveRejected("archive_unreadable", UNREADABLE)
    _, _, _, _, declared, size, _, _ = _END.unpack_from(tail, at)
    end_at = tail_start + at
    locator_at = end_at - _END64_LOCATOR.size
    if locator_at >= 0:
        file.seek(locator_at)
        if file.read(4) == b"PK\x06\x07":  # Zip64: the real numbers are in its own record
            end_at = locator_at - _END64.size
            if end_at < 0:
                raise ArchiveRejected("archive_unreadable", UNREADABLE)
            file.seek(end_at)
            record = file.read(_END64.size)
            if len(record) != _END64.size or record[:4] != b"PK\x06\x06":
                raise ArchiveRejected("archive_unreadable", UNREADABLE)
            declared, size = _END64.unpack(record)[7:9]
    # As in zipfile: data prepended to the archive shifts every offset by as much.
    return end_at - size, size, declared


def _count_entries(file: BinaryIO, start: int, size: int, *, limit: int | None) -> int:
    """The entries of the central directory, walked header by header without building
    anything; ArchiveRejected as soon as there are more than `limit`."""
    if start < 0:
        raise ArchiveRejected("archive_unreadable", UNREADABLE)
    file.seek(start)
    directory = file.read(size)
    if len(directory) != size:
        raise ArchiveRejected("archive_unreadable", UNREADABLE)
    count = at = 0
    while at < size:
        if size - at < _ENTRY_SIZE or directory[at : at + 4] != b"PK\x01\x02":
            raise ArchiveRejected("archive_unreadable", UNREADABLE)
        name, extra, comment = _ENTRY_LENGTHS.unpack_from(directory, at + 28)
        at += _ENTRY_SIZE + name + extra + comment
        count += 1
        if limit is not None and count > limit:
            raise _too_many(limit)
    return count


def _check_extents(entries: list[zipfile.ZipInfo], directory_start: int) -> None:
    """Every entry's data must lie before the central directory, and no two may overlap:
    overlapping entries are how a small archive makes one compressed run count many
    times over ("a better zip bomb"), and data past the directory is a lie."""
    previous_end = 0
    for entry in sorted(entries, key=lambda entry: entry.header_offset):
        start = entry.header_offset
        end = start + 30 + entry.compress_size  # the local header is at least 30 bytes
        if start < previous_end or end > directory_start:
            raise ArchiveRejected("archive_unreadable", UNREADABLE)
        previous_end = end
