"""Prepared models shared through the storage API (the object store when
RECOGNITION_S3_BUCKET is set): prepare_model publishes a build under models/<key>/, and
a node whose models directory (its cache) lacks the artifact it needs fetches it, checks
its SHA-256 against the manifest and only then installs it beside the others.

Artifacts are published before the manifest, so a manifest in the store means the build
is whole; a fetched file is verified before install, so a damaged or altered object is
refused instead of served.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
from pathlib import Path

from . import storage
from .engine import model_store
from .engine.backends import artifact_for
from .engine.manifest import ARTIFACT_NAME, MANIFEST_NAME, ONNX_NAME, ArtifactError, Manifest
from .engine.manifest import ModelNotPrepared
from .engine.weights import sha256_file

logger = logging.getLogger(__name__)

PREFIX = "models/"
_CHUNK = 1024 * 1024


def object_name(key: str, filename: str) -> str:
    return f"{PREFIX}{key}/{filename}"


def publish(manifest: Manifest) -> list[str]:
    """Copy a local build's artifacts, then its manifest, to the store, each unless the
    store already holds it intact (a damaged copy is replaced); returns the names written."""
    written = []
    for filename, expected in (
        (ARTIFACT_NAME, manifest.artifact_sha256),
        (ONNX_NAME, manifest.onnx_sha256),
    ):
        name = object_name(manifest.key, filename)
        if expected is not None and _published_sha256(name) != expected:
            storage.save_file(name, manifest.directory / filename)
            written.append(name)
    name = object_name(manifest.key, MANIFEST_NAME)
    data = (manifest.directory / MANIFEST_NAME).read_bytes()
    if written or _published_bytes(name) != data:
        storage.save(name, data)
        written.append(name)
    return written


def _published_sha256(name: str) -> str | None:
    digest = hashlib.sha256()
    try:
        with storage.open_file(name) as source:
            for chunk in iter(lambda: source.read(_CHUNK), b""):
                digest.update(chunk)
    except FileNotFoundError:
        return None
    return digest.hexdigest()


def _published_bytes(name: str) -> bytes | None:
    try:
        with storage.open_file(name) as source:
            return source.read()
    except FileNotFoundError:
        return None


def published_keys() -> list[str]:
    """The keys whose manifest is in the store."""
    keys = set()
    for stored in storage.list_files(PREFIX):
        parts = stored.name.removeprefix(PREFIX).split("/")
        if len(parts) == 2 and parts[1] == MANIFEST_NAME:
            keys.add(parts[0])
    return sorted(keys)


def read_manifest(key: str) -> Manifest | None:
    """The published manifest of `key`, or None when it is not published (or unreadable)."""
    with tempfile.TemporaryDirectory(prefix="manifest-") as scratch:
        try:
            _download(object_name(key, MANIFEST_NAME), Path(scratch) / MANIFEST_NAME)
            return Manifest.read(Path(scratch))
        except (FileNotFoundError, ArtifactError):
            return None


def ensure_local(models_dir: Path, key: str, backend: str) -> None:
    """Make sure the models directory holds `key` with the artifact `backend` runs,
    fetching it from the store when missing. Whether a local file is intact is checked
    when the classifier loads it."""
    models_dir = Path(models_dir)
    try:
        path, expected = artifact_for(Manifest.read(models_dir / key), backend)
        if expected is None or path.is_file():
            return
    except ArtifactError:
        pass
    fetch(models_dir, key, backend)


def fetch(models_dir: Path, key: str, backend: str) -> Manifest:
    """Download `key`'s manifest and the artifact `backend` needs, verify, install.
    Raises ModelNotPrepared when the store has no such build, ArtifactError when a file
    does not match the manifest, storage.StorageError when the store fails."""
    models_dir = Path(models_dir)
    try:
        with storage.open_file(object_name(key, MANIFEST_NAME)) as source:
            manifest_bytes = source.read()
    except FileNotFoundError:
        raise ModelNotPrepared(
            f"The model {key} is neither in {models_dir} nor published in the object store "
            f"({object_name(key, MANIFEST_NAME)}). Run `python manage.py prepare_model` "
            "where it was built, or activate a prepared model."
        ) from None
    models_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{key}.fetch.", dir=models_dir))
    try:
        (staging / MANIFEST_NAME).write_bytes(manifest_bytes)
        manifest = Manifest.read(staging)
        if manifest.key != key:
            raise ArtifactError(
                f"The published manifest {object_name(key, MANIFEST_NAME)} describes "
                f"{manifest.key}, not {key}: refused."
            )
        path, expected = artifact_for(manifest, backend)
        if expected is not None:
            _download(object_name(key, path.name), path)
            actual = sha256_file(path)
            if actual != expected:
                raise ArtifactError(
                    f"The published artifact {object_name(key, path.name)} does not match "
                    f"its manifest (SHA-256 {actual}, expected {expected}); it may be damaged "
                    "or tampered with, and was not installed. Run `python manage.py "
                    "prepare_model` again where the model was built to publish it anew."
                )
        if _intact_locally(models_dir / key, backend):
            # Another process of this node fetched it meanwhile, and may be loading it:
            # swapping its folder away under it would make that load fail.
            shutil.rmtree(staging, ignore_errors=True)
        else:
            _keep_other_cached_files(models_dir / key, staging)
            model_store.install(staging, models_dir / key)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info("Fetched model %s (%s) from the object store", key, path.name)
    return Manifest.read(models_dir / key)


def _intact_locally(directory: Path, backend: str) -> bool:
    try:
        path, expected = artifact_for(Manifest.read(directory), backend)
    except ArtifactError:
        return False
    return expected is not None and path.is_file() and sha256_file(path) == expected


def _keep_other_cached_files(cached: Path, staging: Path) -> None:
    """A cache that held the other backend's artifact keeps it when this one arrives."""
    if not cached.is_dir():
        return
    for path in cached.iterdir():
        if path.is_file() and not (staging / path.name).exists():
            shutil.copy2(path, staging / path.name)


def _download(name: str, target: Path) -> None:
    with storage.open_file(name) as source, open(target, "wb") as handle:
        shutil.copyfileobj(source, handle, _CHUNK)
