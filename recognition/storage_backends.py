"""The two places files can live: the local disk (the default) and an S3-compatible object
store (RECOGNITION_S3_BUCKET set). Both are Django storage backends; recognition/storage.py
is the only module that uses them.

Names derive from content (a hash, a model key), so both overwrite an object of the same
name instead of inventing a free one, and both write an object whole or not at all. Each
also streams a file out without reading it whole (`open_stream`) and lists a prefix
with sizes and dates (`iter_files`), which Django's Storage API has no call for.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import IO, Any

from botocore.config import Config
from django.core.files.storage import FileSystemStorage
from storages.backends.s3 import S3Storage
from storages.utils import clean_name

_CHUNK = 1024 * 1024


class AtomicFileSystemStorage(FileSystemStorage):
    """FileSystemStorage whose writes readers never see half done: a temporary file in the
    same folder, fsync, os.replace, fsync of the folder. Overwrites in place."""

    def __init__(self, **kwargs: Any):
        kwargs.setdefault("allow_overwrite", True)
        super().__init__(**kwargs)

    def get_available_name(self, name: str, max_length: int | None = None) -> str:
        return name  # content-derived names: the same name is the same content

    def _save(self, name: str, content: Any) -> str:
        path = self.path(name)
        directory = os.path.dirname(path)
        os.makedirs(directory, mode=self.directory_permissions_mode or 0o777, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp"
        )
        try:
            with os.fdopen(fd, "wb") as handle:
                if hasattr(content, "chunks"):
                    for chunk in content.chunks(_CHUNK):
                        handle.write(chunk)
                else:
                    handle.write(content.read())
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, self.file_permissions_mode or 0o640)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        _fsync_directory(directory)
        return name

    def open_stream(self, name: str) -> IO[bytes]:
        return open(self.path(name), "rb")  # noqa: SIM115 - the caller closes it

    def iter_files(self, prefix: str) -> Iterator[tuple[str, int, datetime]]:
        """Every file under the folder `prefix`, temporary files of interrupted writes
        included (they are garbage like any unreferenced file)."""
        root = self.path(prefix)
        for folder, subfolders, files in os.walk(root):
            subfolders.sort()
            for filename in sorted(files):
                path = os.path.join(folder, filename)
                try:
                    status = os.stat(path)
                except FileNotFoundError:
                    continue
                name = os.path.relpath(path, self.location).replace(os.sep, "/")
                modified = datetime.fromtimestamp(status.st_mtime, tz=UTC)
                yield name, status.st_size, modified


def _fsync_directory(directory: str) -> None:
    # Makes the rename itself durable; not possible on every platform.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# boto3 sessions, one per set of credentials, shared by every storage instance: making
# one loads botocore's service models (a quarter of a second here), and Django makes a
# new storage whenever STORAGES changes (every test). A session is not thread-safe while
# it makes clients, hence the lock (re-entrant: making a connection makes a session).
_sessions: dict[tuple[Any, ...], Any] = {}
_sessions_lock = threading.RLock()


class ObjectStoreStorage(S3Storage):
    """django-storages' S3 backend (private objects, overwrite on the same name; see the
    settings) that can also stream an object out and list a prefix with sizes."""

    def __init__(self, **settings: Any):
        super().__init__(**settings)
        if "client_config" not in settings:
            # Fail within seconds when the store is away, instead of botocore's minute
            # per attempt: an upload then answers 503 while the client still waits.
            self.client_config = Config(
                s3={"addressing_style": self.addressing_style},
                signature_version=self.signature_version or "s3v4",
                proxies=self.proxies,
                connect_timeout=5,
                read_timeout=30,
                retries={"max_attempts": 3, "mode": "standard"},
            )

    def _create_session(self) -> Any:
        key = (self.session_profile, self.access_key, self.secret_key, self.security_token)
        with _sessions_lock:
            if key not in _sessions:
                _sessions[key] = super()._create_session()
            return _sessions[key]

    @property
    def connection(self) -> Any:
        connection = getattr(self._connections, "connection", None)
        if connection is None:
            with _sessions_lock:
                connection = super().connection
        return connection

    def probe_client(self, config: Config) -> Any:
        """A separate client of this store with `config` (the start-up check's)."""
        with _sessions_lock:
            return self._create_session().client(
                "s3",
                endpoint_url=self.endpoint_url,
                region_name=self.region_name,
                use_ssl=self.use_ssl,
                verify=self.verify,
                config=self.client_config.merge(config),
            )

    def open_stream(self, name: str) -> _ObjectStream:
        key = self._normalize_name(clean_name(name))
        answer = self.connection.meta.client.get_object(Bucket=self.bucket_name, Key=key)
        return _ObjectStream(answer["Body"], name=name, size=answer["ContentLength"])

    def iter_files(self, prefix: str) -> Iterator[tuple[str, int, datetime]]:
        root = self._normalize_name(clean_name(prefix)).rstrip("/") + "/"
        location = self.location.rstrip("/") + "/" if self.location else ""
        paginator = self.connection.meta.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket_name, Prefix=root):
            for entry in page.get("Contents", ()):
                yield entry["Key"][len(location) :], entry["Size"], entry["LastModified"]


class _ObjectStream:
    """An object's body as a read-only binary file: read in chunks as the client takes
    them, never held whole. FileResponse reads `size` for Content-Length."""

    def __init__(self, body: Any, *, name: str, size: int):
        self._body = body
        self.name = name
        self.size = size

    def read(self, amount: int | None = -1) -> bytes:
        return self._body.read(None if amount is None or amount < 0 else amount)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        self._body.close()

    def __enter__(self) -> _ObjectStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
