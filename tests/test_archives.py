"""ZIP archives for bulk import are read as hostile input: whatever is in them, the
service reads only the central directory before deciding, never unpacks more than its
limits allow, and says for each entry, or for the whole archive, why it was refused.

Every archive here is built in memory with zipfile; the lies zipfile will not write
(a NUL in a name, an encryption flag, sizes and offsets that disagree) are patched into
its bytes afterwards."""

from __future__ import annotations

import io
import random
import stat
import struct
import warnings
import zipfile
from collections.abc import Callable

import pytest

from recognition import archives
from recognition.archives import ArchiveMemberRefused, ArchiveRejected, Member
from recognition.engine.images import decode_image
from recognition.errors import describe_error, too_large_message
from tests.web_fixtures import image_bytes

LIMITS = {"max_entries": 50, "max_total_bytes": 10_000_000, "max_ratio": 100, "max_entry_bytes": 1_000_000}
PNG = image_bytes("PNG", (32, 24), seed=1)
JPEG = image_bytes("JPEG", (32, 24), seed=2)


def build(*entries: tuple[str | zipfile.ZipInfo, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # duplicate names, on purpose
        with zipfile.ZipFile(buffer, "w", method) as archive:
            for name, data in entries:
                archive.writestr(name, data)
    return buffer.getvalue()


def noise(size: int, seed: int = 0) -> bytes:
    """Bytes that do not compress."""
    return random.Random(seed).randbytes(size)


def directory_headers(data: bytes) -> dict[str, int]:
    """Name -> offset of its central directory header (names as zipfile wrote them)."""
    end = data.rindex(b"PK\x05\x06")
    size, start = struct.unpack_from("<LL", data, end + 12)
    headers, at = {}, start
    while at < start + size:
        name_length, extra, comment = struct.unpack_from("<3H", data, at + 28)
        headers[data[at + 46 : at + 46 + name_length].decode()] = at
        at += 46 + name_length + extra + comment
    return headers


def patch(data: bytes, at: int, fmt: str, value: int) -> bytes:
    patched = bytearray(data)
    struct.pack_into(fmt, patched, at, value)
    return bytes(patched)


def local_header(data: bytes, name: str) -> int:
    return struct.unpack_from("<L", data, directory_headers(data)[name] + 42)[0]


def with_flag(data: bytes, name: str, bit: int) -> bytes:
    """Set a general-purpose flag bit in the entry's local and central headers."""
    cd_at, local_at = directory_headers(data)[name], local_header(data, name)
    data = patch(data, cd_at + 8, "<H", struct.unpack_from("<H", data, cd_at + 8)[0] | bit)
    return patch(data, local_at + 6, "<H", struct.unpack_from("<H", data, local_at + 6)[0] | bit)


def text(message: str) -> str:
    return message.replace("\xa0", " ")  # sizes keep their unit on one line


def inspect(data: bytes, **limits: int) -> list[Member]:
    return archives.inspect(io.BytesIO(data), **{**LIMITS, **limits})


def rejection(data: bytes, **limits: int) -> ArchiveRejected:
    with pytest.raises(ArchiveRejected) as caught:
        inspect(data, **limits)
    return caught.value


def symlink(name: str, target: bytes) -> tuple[zipfile.ZipInfo, bytes]:
    info = zipfile.ZipInfo(name)
    info.create_system = 3  # unix
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info, target


def as_zip64(data_entries, monkeypatch) -> bytes:
    # zipfile writes the Zip64 end records only past 65 535 entries; lower its threshold.
    monkeypatch.setattr(zipfile, "ZIP_FILECOUNT_LIMIT", 1)
    return build(*data_entries)


GOOD = [
    ("holiday/", b""),
    ("holiday/beach.png", PNG),
    ("holiday/sub/dog.jpg", JPEG),
    ("__MACOSX/holiday/._beach.png", b"\x00\x05\x16\x07 resource fork"),
    (".DS_Store", b"Bud1"),
    ("Cat.PNG", image_bytes("PNG", (20, 20), seed=3)),
    ("Cat.PNG", image_bytes("PNG", (20, 20), seed=4)),  # the same name twice
]


@pytest.mark.parametrize("layout", ["plain", "zip64", "after a stub"])
def test_a_good_archive_lists_its_pictures_in_order_and_reads_each_back(layout, monkeypatch):
    if layout == "zip64":
        data = as_zip64(GOOD, monkeypatch)
        assert b"PK\x06\x06" in data
    else:
        data = build(*GOOD)
        if layout == "after a stub":  # a self-extracting archive: zipfile reads it too
            data = b"MZ" + noise(5000) + data

    members = inspect(data)

    # Directories and the archiver's hidden files are skipped; positions keep their place.
    assert [(m.position, m.name, m.filename, m.problem_code) for m in members] == [
        (1, "holiday/beach.png", "beach.png", None),
        (2, "holiday/sub/dog.jpg", "dog.jpg", None),
        (5, "Cat.PNG", "Cat.PNG", None),
        (6, "Cat.PNG", "Cat.PNG", None),
    ]
    assert [m.size for m in members] == [len(GOOD[i][1]) for i in (1, 2, 5, 6)]
    file = io.BytesIO(data)
    archives.inspect(file, **LIMITS)
    read = [archives.read_member(file, m, max_entry_bytes=LIMITS["max_entry_bytes"]) for m in members]
    assert read == [GOOD[1][1], GOOD[2][1], GOOD[5][1], GOOD[6][1]]  # both Cat.PNGs, by position
    assert decode_image(read[1]).format == "JPEG"
    # A worker after a restart has only the member's fields and a new file object.
    stored = Member(position=6, name="Cat.PNG", filename="Cat.PNG", size=members[3].size)
    assert archives.read_member(io.BytesIO(data), stored, max_entry_bytes=1_000_000) == GOOD[6][1]


def test_hostile_entries_are_each_refused_with_a_reason_and_the_rest_still_imports():
    nested = build(("inner.png", PNG))
    data = build(
        ("/etc/cron.jpg", PNG),
        ("C:\\Windows\\drive.jpg", PNG),
        ("\\\\server\\share\\x.jpg", PNG),
        ("../../outside.jpg", PNG),
        ("photos/../../outside2.jpg", PNG),
        ("nul@.jpg", PNG),  # the @ becomes a NUL below
        ("new\nline.png", PNG),
        symlink("link.jpg", b"/etc/passwd"),
        ("more.zip", nested),
        ("backup.tar.gz", noise(100)),
        ("secret.png", PNG),  # flagged as encrypted below
        ("notes.txt", b"a few words\n"),
        ("photo.jpg.exe", b"MZ"),
        ("big.png", noise(3 * len(PNG), seed=5)),
        ("ok.png", PNG),
    )
    data = data.replace(b"nul@.jpg", b"nul\x00.jpg")
    data = with_flag(data, "secret.png", 0x1)
    bzip2 = build(("packed.png", PNG), method=zipfile.ZIP_BZIP2)

    cap = 2 * len(PNG)
    members = inspect(data, max_entry_bytes=cap) + inspect(bzip2, max_entry_bytes=cap)

    assert {m.filename: m.problem_code for m in members} == {
        "cron.jpg": "unsafe_name",
        "drive.jpg": "unsafe_name",
        "x.jpg": "unsafe_name",
        "outside.jpg": "unsafe_name",
        "outside2.jpg": "unsafe_name",
        "nul.jpg": "unsafe_name",
        "newline.png": "unsafe_name",
        "link.jpg": "symlink",
        "more.zip": "nested_archive",
        "backup.tar.gz": "nested_archive",
        "secret.png": "encrypted",
        "notes.txt": "not_an_image",
        "photo.jpg.exe": "not_an_image",
        "big.png": "too_large",
        "ok.png": None,
        "packed.png": "archive_member_unreadable",
    }
    assert len(members) == 16
    for member in members:
        assert (member.problem_message is None) == (member.problem_code is None)
    assert next(m for m in members if m.filename == "big.png").problem_message == too_large_message(cap)
    # Refused stays refused even if the caller reads it anyway.
    for member in members:
        if member.problem_code not in (None, "too_large"):
            source = bzip2 if member.filename == "packed.png" else data
            with pytest.raises(ArchiveMemberRefused) as caught:
                archives.read_member(io.BytesIO(source), member, max_entry_bytes=1_000_000)
            assert (caught.value.code, caught.value.status) == (member.problem_code, 400)


def _counted_wrong(data: bytes) -> bytes:
    """The end record declares one entry, whatever the directory holds."""
    end = data.rindex(b"PK\x05\x06")
    return patch(patch(data, end + 8, "<H", 1), end + 10, "<H", 1)


def _data_past_the_directory(data: bytes) -> bytes:
    return patch(data, directory_headers(data)["c.png"] + 20, "<L", len(data))


def _overlapping(data: bytes) -> bytes:
    """Every entry's header points at the first one's data: one compressed run counted
    as many files (the "better zip bomb" layout)."""
    for name in ("b.png", "c.png"):
        data = patch(data, directory_headers(data)[name] + 42, "<L", 0)
    return data


THREE = build(("a.png", PNG), ("b.png", PNG), ("c.png", PNG))


def _bomb() -> bytes:
    """20 MB of zeros in about 20 KB, written in chunks so the test holds neither."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("zeros.png", "w") as entry:
            for _ in range(20):
                entry.write(bytes(1024 * 1024))
        archive.writestr("ok.png", PNG)
    return buffer.getvalue()


def _all_encrypted() -> bytes:
    data = build(("a.png", PNG), ("b.png", PNG), ("notes/", b""))
    return with_flag(with_flag(data, "a.png", 0x1), "b.png", 0x1)


WHOLE_ARCHIVE: dict[str, tuple[Callable[[], bytes], dict[str, int], int, str, str]] = {
    # case: (archive, limits, status, code, words the message must carry)
    "not a zip": (lambda: b"just some words, not an archive\n", {}, 400, "archive_unreadable", "not a ZIP"),
    "nothing at all": (lambda: b"", {}, 400, "archive_unreadable", "not a ZIP"),
    "cut in half": (lambda: THREE[: len(THREE) // 2], {}, 400, "archive_unreadable", "truncated"),
    "its end cut off": (lambda: THREE[:-5], {}, 400, "archive_unreadable", "truncated"),
    "a count that lies": (lambda: _counted_wrong(THREE), {}, 400, "archive_unreadable", "damaged"),
    "data past the directory": (lambda: _data_past_the_directory(THREE), {}, 400, "archive_unreadable", "damaged"),
    "overlapping entries": (lambda: _overlapping(THREE), {}, 400, "archive_unreadable", "damaged"),
    "no entries": (lambda: build(), {}, 400, "archive_empty", "no files"),
    "only directories": (lambda: build(("a/", b""), ("a/b/", b"")), {}, 400, "archive_empty", "no files"),
    "too many entries": (
        lambda: build(*[(f"{i}.png", PNG) for i in range(6)]), {"max_entries": 5}, 400,
        "archive_too_many_entries", "more than 5 entries",
    ),
    "many entries declared as one": (
        lambda: _counted_wrong(build(*[(f"{i}.png", b"x") for i in range(200)])), {"max_entries": 10}, 400,
        "archive_too_many_entries", "more than 10 entries",
    ),
    "too much once unpacked": (
        lambda: build(*[(f"{i}.png", noise(40_000, i)) for i in range(3)]), {"max_total_bytes": 102_400},
        413, "import_too_large", "at most 100.0 KB",
    ),
    "every file password-protected": (
        _all_encrypted,
        {}, 400, "archive_encrypted", "password-protected",
    ),
    "a zip bomb": (_bomb, {"max_entry_bytes": 30_000_000, "max_total_bytes": 30_000_000}, 400, "archive_bomb", "limit of 100"),
}


@pytest.mark.parametrize("case", list(WHOLE_ARCHIVE))
def test_an_archive_that_cannot_be_imported_is_refused_whole_saying_why(case):
    make, limits, status, code, words = WHOLE_ARCHIVE[case]

    refused = rejection(make(), **limits)

    assert (refused.status, refused.code) == (status, code)
    assert words in text(refused.message), refused.message
    # The service's one vocabulary: the API answers it like any other refusal.
    answer = describe_error(refused)
    assert (answer.status, answer.code, answer.message) == (status, code, refused.message)


def test_a_member_is_never_read_past_the_cap_whatever_its_header_says():
    big = noise(300_000, seed=7)
    data = build(("big.png", big), ("zeros.png", bytes(3_000_000)), ("bad.png", PNG))
    file = io.BytesIO(data)
    members = {m.filename: m for m in archives.inspect(file, **{**LIMITS, "max_ratio": 1_000_000})}

    # The header says 300 KB, within the cap it was listed with; a smaller cap stops the read.
    with pytest.raises(ArchiveMemberRefused) as caught:
        archives.read_member(file, members["big.png"], max_entry_bytes=102_400)
    assert (caught.value.code, caught.value.status) == ("too_large", 400)
    assert "100.0 KB" in text(caught.value.message)
    assert archives.read_member(file, members["big.png"], max_entry_bytes=300_000) == big

    # A header that claims 1000 bytes for 3 MB of zeros: the read stops there, and the
    # data then fails its checksum.
    lying = data
    for at in (directory_headers(data)["zeros.png"] + 24, local_header(data, "zeros.png") + 22):
        lying = patch(lying, at, "<L", 1000)
    [zeros] = [m for m in inspect(lying) if m.filename == "zeros.png"]
    assert zeros.size == 1000 and zeros.problem_code is None
    with pytest.raises(ArchiveMemberRefused) as caught:
        archives.read_member(io.BytesIO(lying), zeros, max_entry_bytes=2000)
    assert caught.value.code == "archive_member_unreadable"

    # Damaged compressed data in an intact directory: that entry only.
    start = local_header(data, "bad.png") + 30 + len("bad.png") + 20
    damaged = data[:start] + bytes(40) + data[start + 40 :]
    [bad] = [m for m in inspect(damaged, max_ratio=1_000_000) if m.filename == "bad.png"]
    with pytest.raises(ArchiveMemberRefused) as caught:
        archives.read_member(io.BytesIO(damaged), bad, max_entry_bytes=1_000_000)
    assert (caught.value.code, caught.value.status) == ("archive_member_unreadable", 400)
    assert caught.value.message.strip()


def test_a_member_that_is_no_longer_where_it_was_is_refused():
    data = build(("a.png", PNG))
    gone = Member(position=3, name="a.png", filename="a.png", size=len(PNG))
    renamed = Member(position=0, name="b.png", filename="b.png", size=len(PNG))

    for member in (gone, renamed):
        with pytest.raises(ArchiveMemberRefused) as caught:
            archives.read_member(io.BytesIO(data), member, max_entry_bytes=1_000_000)
        assert caught.value.code == "archive_member_unreadable"


def test_the_limits_come_from_settings(settings):
    settings.RECOGNITION_IMPORT_MAX_FILES = 7
    settings.RECOGNITION_IMPORT_MAX_UNCOMPRESSED_BYTES = 8
    settings.RECOGNITION_IMPORT_MAX_RATIO = 9
    settings.RECOGNITION_MAX_UPLOAD_BYTES = 10
    assert archives.limits_from_settings() == {
        "max_entries": 7, "max_total_bytes": 8, "max_ratio": 9, "max_entry_bytes": 10,
    }
