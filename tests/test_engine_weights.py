"""Obtaining weights: torch.hub's real download (from a local HTTP server) with its hash
checks, the offline help and fallback, local and custom files, and idempotency."""

import hashlib
import http.server
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import pytest
import torch
import torchvision
from PIL import Image

from recognition.engine.model_store import sole_build
from recognition.engine.prepare import PrepareOutcome, prepare
from recognition.engine.classifier import Classifier
from recognition.engine.specs import RESNET18, ModelSpec, WeightsSource
from recognition.engine.weights import (
    DOWNLOAD_TIMEOUT_SECONDS,
    WeightsDownloadFailed,
    WeightsError,
    WeightsMismatch,
    obtain_official,
)

LABELS = ["granite", "basalt", "marble", "slate", "quartzite"]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _nothing_written(models_dir: Path) -> bool:
    return not models_dir.exists() or not any(models_dir.iterdir())


@dataclass
class LocalServer:
    root: Path
    base_url: str
    requested: list[str] = field(default_factory=list)

    def publish(self, folder: str, source: Path, name: str) -> str:
        """Serve a copy of `source` as /folder/name; returns its URL."""
        (self.root / folder).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, self.root / folder / name)
        return f"{self.base_url}/{folder}/{name}"


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[LocalServer]:
    root = tmp_path_factory.mktemp("served")
    local = LocalServer(root=root, base_url="")

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self) -> None:
            local.requested.append(self.path)
            super().do_GET()

        def log_message(self, format: str, *args: object) -> None:  # quiet test output
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(root)))
    local.base_url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    # A proxy in the environment must not intercept requests to the local server.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("no_proxy", "127.0.0.1,localhost")
        patch.setenv("NO_PROXY", "127.0.0.1,localhost")
        yield local
    httpd.shutdown()
    httpd.server_close()


@dataclass(frozen=True)
class Official:
    """Stands in for the published ResNet-18 file: the session's random weights, named
    the torchvision way, with the hash prefix torch.hub checks in the file name."""

    path: Path
    sha256: str

    @property
    def name(self) -> str:
        return f"resnet18-{self.sha256[:8]}.pth"

    def spec(self, url: str, sha256: str | None = None) -> ModelSpec:
        return replace(RESNET18, weights=WeightsSource(url=url, sha256=sha256 or self.sha256))


@pytest.fixture(scope="module")
def official(random_weights_file) -> Official:
    return Official(random_weights_file, _sha256(random_weights_file))


@dataclass(frozen=True)
class Download:
    outcome: PrepareOutcome
    models_dir: Path
    torch_home: Path
    spec: ModelSpec


@pytest.fixture(scope="module")
def downloaded(server, official, tmp_path_factory) -> Download:
    """One real download + build, shared by the tests that only look at its results."""
    url = server.publish("good", official.path, official.name)
    base = tmp_path_factory.mktemp("downloaded")
    torch_home, models_dir = base / "torch-home", base / "models"
    spec = official.spec(url)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TORCH_HOME", str(torch_home))
        outcome = prepare(models_dir, spec=spec)
    return Download(outcome, models_dir, torch_home, spec)


def _closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/resnet18-f37072fd.pth"


def test_it_downloads_the_weights_with_torch_hub_and_prepares_them(downloaded, official):
    manifest = downloaded.outcome.manifest
    cached = downloaded.torch_home / "hub" / "checkpoints" / official.name

    assert downloaded.outcome.built
    assert manifest.weights_source == "download"
    assert manifest.weights_sha256 == official.sha256
    assert manifest.artifact_path.is_file()
    assert sole_build(downloaded.models_dir) == manifest.key
    assert cached.is_file() and _sha256(cached) == official.sha256


def test_preparing_the_same_weights_again_builds_nothing(downloaded, server, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(downloaded.torch_home))
    artifact = downloaded.outcome.manifest.artifact_path
    built_at, downloads = artifact.stat().st_mtime_ns, len(server.requested)

    again = prepare(downloaded.models_dir, spec=downloaded.spec)

    assert not again.built
    assert "already prepared" in again.summary()
    assert artifact.stat().st_mtime_ns == built_at
    assert len(server.requested) == downloads  # the verified cache was reused


def test_it_refuses_a_download_whose_bytes_differ(server, official, tmp_path):
    impostor = tmp_path / "impostor.pth"
    torch.manual_seed(99)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), impostor)
    url = server.publish("impostor", impostor, official.name)
    models_dir = tmp_path / "models"

    with pytest.raises(WeightsMismatch) as caught:
        prepare(models_dir, spec=official.spec(url))

    message = str(caught.value)
    assert official.sha256[:8] in message and _sha256(impostor) in message
    assert _nothing_written(models_dir)
    assert not (tmp_path / "torch-home" / "hub" / "checkpoints" / official.name).exists()


def test_it_refuses_a_download_that_matches_only_the_hash_prefix(server, official, tmp_path):
    url = server.publish("good", official.path, official.name)
    expected = official.sha256[:8] + "0" * 56
    models_dir = tmp_path / "models"

    with pytest.raises(WeightsMismatch) as caught:
        prepare(models_dir, spec=official.spec(url, sha256=expected))

    assert expected in str(caught.value) and official.sha256 in str(caught.value)
    assert _nothing_written(models_dir)
    assert not (tmp_path / "torch-home" / "hub" / "checkpoints" / official.name).exists()


def test_an_unreachable_server_fails_quickly_with_the_offline_help(official, tmp_path):
    models_dir = tmp_path / "models"
    started = time.monotonic()

    with pytest.raises(WeightsDownloadFailed) as caught:
        prepare(models_dir, spec=official.spec(_closed_port_url()))

    message = str(caught.value)
    # It gave up on the refusal itself, not on a timeout or after retrying: a refused
    # connection takes milliseconds, even on a machine with every core busy, and the
    # bound is the whole download timeout, which a wait for the network would reach.
    assert "Connection refused" in message
    assert time.monotonic() - started < DOWNLOAD_TIMEOUT_SECONDS
    assert "no internet access" in message
    assert f"SHA-256 {official.sha256}" in message
    assert "--weights" in message and "--fallback" in message
    assert _nothing_written(models_dir)


@pytest.fixture
def silent_server() -> Iterator[str]:
    """Accepts connections and never answers: a firewall that swallows packets."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/models/resnet18-00000000.pth"
    stop.set()
    thread.join(5)
    for connection in accepted:
        connection.close()
    listener.close()


def test_a_server_that_never_answers_fails_within_the_timeout(official, silent_server):
    outcome: list[BaseException] = []

    def download() -> None:
        try:
            obtain_official(official.spec(silent_server), timeout=1.0)
        except BaseException as exc:  # handed to the test
            outcome.append(exc)

    attempt = threading.Thread(target=download, daemon=True)
    attempt.start()
    # With its 1 s timeout the download gives up in about a second however busy the
    # machine is; without one it waits for ever. A hundred and twenty times the timeout
    # tells the two apart and keeps a hang from hanging the test run.
    attempt.join(120)

    assert not attempt.is_alive(), "the download hung instead of timing out"
    [error] = outcome
    assert isinstance(error, WeightsDownloadFailed)
    assert "(timed out)" in str(error)  # it was the timeout that ended it
    assert "no internet access" in str(error)


def test_with_fallback_an_unreachable_server_prepares_efficientnet_lite0(official, tmp_path):
    models_dir = tmp_path / "models"
    said: list[str] = []

    outcome = prepare(
        models_dir, spec=official.spec(_closed_port_url()), fallback=True, log=said.append
    )

    assert outcome.fell_back_from == "resnet18"
    assert outcome.manifest.name == "efficientnet_lite0"
    assert outcome.manifest.weights_source == "package"
    assert sole_build(models_dir) == outcome.manifest.key
    assert any("--weights" in line for line in said)  # the user still learns how to fix it


def test_it_refuses_a_tampered_local_weights_file_naming_both_hashes(official, tmp_path):
    tampered = tmp_path / official.name
    data = bytearray(official.path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    tampered.write_bytes(bytes(data))
    models_dir = tmp_path / "models"

    with pytest.raises(WeightsMismatch) as caught:
        prepare(models_dir, spec=official.spec(_closed_port_url()), weights_file=tampered)

    assert official.sha256 in str(caught.value) and _sha256(tampered) in str(caught.value)
    assert "--custom" in str(caught.value)
    assert _nothing_written(models_dir)


@pytest.fixture(scope="module")
def five_classes(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("five-classes")
    torch.manual_seed(5)
    weights = folder / "rocks.pth"
    torch.save(torchvision.models.resnet18(weights=None, num_classes=5).state_dict(), weights)
    labels = folder / "labels.txt"
    labels.write_text("\n".join(LABELS) + "\n")
    return weights, labels


@pytest.fixture(scope="module")
def custom_models_dir(five_classes, tmp_path_factory) -> Path:
    weights, labels = five_classes
    models_dir = tmp_path_factory.mktemp("custom") / "models"
    prepare(models_dir, weights_file=weights, custom=True, labels_file=labels)
    return models_dir


def test_custom_weights_with_their_labels_are_served_and_recorded(custom_models_dir, five_classes):
    weights, _ = five_classes
    classifier = Classifier(custom_models_dir)

    manifest = classifier.manifest()
    (result,) = classifier.classify([_grey_picture()], top_k=5)

    assert manifest.custom and manifest.weights_source == "custom"
    assert manifest.weights_sha256 == _sha256(weights)
    assert manifest.categories == LABELS
    assert {p.label for p in result.predictions} == set(LABELS)


def test_preparing_the_same_custom_weights_again_says_nothing_to_do(
    custom_models_dir, five_classes
):
    weights, labels = five_classes

    again = prepare(custom_models_dir, weights_file=weights, custom=True, labels_file=labels)

    assert not again.built
    assert "already prepared" in again.summary()


def test_custom_weights_whose_head_does_not_fit_the_labels_are_refused(
    random_weights_file, five_classes, tmp_path
):
    _, five_labels = five_classes
    models_dir = tmp_path / "models"

    with pytest.raises(WeightsError) as caught:
        prepare(models_dir, weights_file=random_weights_file, custom=True, labels_file=five_labels)

    assert "5 classes" in str(caught.value) and "--labels" in str(caught.value)
    assert _nothing_written(models_dir)


def _grey_picture() -> Image.Image:
    return Image.new("RGB", (64, 48), (90, 90, 90))
