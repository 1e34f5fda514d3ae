"""`manage.py classify PATH...`: an aligned table or JSON lines, folders walked
recursively, bad files reported while good ones still get results, non-zero exit on
any failure."""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from recognition.configured_classifier import get_classifier
from recognition.engine.backends import BACKENDS
from recognition.engine.images import decode_image
from tests.helpers import REPO, noise_picture

# Runs of the command, one after the other, with every core busy. Each is a fresh process
# that spends about 5 s of CPU importing torch, so with half a core each, six take about a
# minute on a quiet two-core machine. Too few to catch a rare crash every time: the test
# with RUNNER_STILL_IN_TORCH puts the runner where that crash happens, every time.
RUNS_WITH_EVERY_CORE_BUSY = 6

# A fault for the runner thread: after answering, it keeps freeing tensors (each free
# releases and re-takes the GIL inside torch's C++ code) until something arrives on its
# queue. That is where a runner descheduled on a busy machine can still be when the
# command's main thread finishes; without an orderly shutdown nothing ever arrives.
RUNNER_STILL_IN_TORCH = """
import torch
from recognition.engine.batching import BatchingClassifier

serve = BatchingClassifier._serve

def serve_then_stay_in_torch(self, batch):
    serve(self, batch)
    while self._queue.empty():
        torch.empty(1024)

BatchingClassifier._serve = serve_then_stay_in_torch
"""


def _write_picture(path: Path, seed: int, image_format: str = "PNG") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    noise_picture(seed).save(path, format=image_format)
    return path


def _classify(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("classify", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def _classify_failing(*args: str) -> tuple[str, str, CommandError]:
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(CommandError) as caught:
        call_command("classify", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue(), caught.value


def _json_lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines()]


def _run_in_shell(
    models_dir: Path, *args: str, backend: str | None = None, before: str = ""
) -> subprocess.CompletedProcess:
    """`manage.py classify ARGS` in a fresh process; `before` is Python run first."""
    environment = {
        **os.environ,
        "RECOGNITION_DATA_DIR": str(models_dir.parent),
        "SECRET_KEY": "test",
    }
    if backend:
        environment["RECOGNITION_BACKEND"] = backend
    command = [sys.executable, "manage.py", "classify", *args]
    if before:  # then manage.py, as `python manage.py ...` runs it
        then_manage = "import runpy, sys\nsys.argv[:] = sys.argv[1:]\n" + (
            "runpy.run_path(sys.argv[0], run_name='__main__')"
        )
        command = [sys.executable, "-c", before + then_manage, *command[1:]]
    # The timeout only turns a hang into a failure: a run takes seconds, even on a busy machine.
    return subprocess.run(
        command, cwd=REPO, env=environment, capture_output=True, text=True, timeout=300
    )


@pytest.fixture
def every_core_busy():
    """One busy process per core for the length of the test, as a loaded CI machine."""
    hogs = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range(len(os.sched_getaffinity(0)))
    ]
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()
        for hog in hogs:
            hog.wait()


def test_it_prints_an_aligned_table_of_top_labels_with_percentages(tmp_path):
    first = _write_picture(tmp_path / "first.png", seed=1)
    second = _write_picture(tmp_path / "a-much-longer-name.jpg", seed=2, image_format="JPEG")
    expected_top = get_classifier().classify([decode_image(first.read_bytes()).image], top_k=3)

    out, _ = _classify(str(first), str(second))

    header, *rows = out.splitlines()
    assert header.split() == ["PATH", "TOP", "1", "TOP", "2", "TOP", "3"]
    assert [row.split()[0] for row in rows] == [str(first), str(second)]
    # Aligned: each "12.3%" ends at the same offset in every row, under its header.
    percent_signs = [header.index(f"TOP {rank}") + len(" 12.3") for rank in (1, 2, 3)]
    for row in rows:
        assert [i for i, character in enumerate(row) if character == "%"] == percent_signs
    top = expected_top[0].predictions[0]
    assert f"{top.score:.1%} {top.label}" in " ".join(rows[0].split())


def test_with_json_it_prints_one_object_per_line_with_the_documented_keys(tmp_path):
    pictures = [_write_picture(tmp_path / f"{n}.png", seed=n) for n in range(3)]
    identity = get_classifier().identity()

    out, _ = _classify("--json", "--top-k", "4", *map(str, pictures))

    lines = _json_lines(out)
    assert [line["path"] for line in lines] == list(map(str, pictures))
    for line in lines:
        assert set(line) == {"path", "model", "model_version", "predictions"}
        assert line["model"] == identity.name and line["model_version"] == identity.version
        assert len(line["predictions"]) == 4
        for prediction in line["predictions"]:
            assert set(prediction) == {"label", "index", "score"}
            assert isinstance(prediction["index"], int) and 0 < prediction["score"] <= 1


def test_folders_are_walked_recursively_for_image_files_only(tmp_path):
    album = tmp_path / "album"
    top = _write_picture(album / "top.png", seed=1)
    deep = _write_picture(album / "2024" / "summer" / "DEEP.JPG", seed=2, image_format="JPEG")
    (album / "notes.txt").write_text("not a picture")
    _write_picture(album / ".thumbnails" / "hidden.png", seed=3)

    out, _ = _classify("--json", str(album))

    assert [line["path"] for line in _json_lines(out)] == [str(top), str(deep)]


def test_a_file_named_explicitly_is_classified_whatever_its_extension(tmp_path):
    odd = _write_picture(tmp_path / "scan.data", seed=4)

    out, _ = _classify("--json", str(odd))

    (line,) = _json_lines(out)
    assert line["path"] == str(odd) and len(line["predictions"]) == 3


def test_a_bad_file_is_reported_and_fails_the_run_while_good_files_get_results(tmp_path):
    good = _write_picture(tmp_path / "good.png", seed=5)
    bad = tmp_path / "middle-bad.jpg"
    bad.write_text("this is not a JPEG")
    also_good = _write_picture(tmp_path / "zz-also-good.png", seed=6)

    out, _, error = _classify_failing("--json", str(tmp_path))

    good_line, bad_line, also_good_line = _json_lines(out)
    assert good_line["path"] == str(good) and good_line["predictions"]
    assert bad_line == {"path": str(bad), "error": bad_line["error"]}
    assert "not an image" in bad_line["error"]
    assert also_good_line["path"] == str(also_good) and also_good_line["predictions"]
    assert "1 of 3 files could not be classified" in str(error)


def test_a_missing_path_is_reported_in_the_table_and_fails_the_run(tmp_path):
    good = _write_picture(tmp_path / "good.png", seed=7)
    missing = tmp_path / "missing.png"

    out, _, _ = _classify_failing(str(missing), str(good))

    _, missing_row, good_row = out.splitlines()
    assert missing_row.startswith(str(missing)) and "error: does not exist" in missing_row
    assert good_row.startswith(str(good)) and "%" in good_row


def test_the_batch_size_does_not_change_the_results(tmp_path):
    pictures = [str(_write_picture(tmp_path / f"{n}.png", seed=n)) for n in range(5)]

    one_by_one, _ = _classify("--json", "--batch-size", "1", *pictures)
    three_at_once, _ = _classify("--json", "--batch-size", "3", *pictures)

    for single, batched in zip(_json_lines(one_by_one), _json_lines(three_at_once), strict=True):
        assert single["path"] == batched["path"]
        assert [p["index"] for p in single["predictions"]] == [
            p["index"] for p in batched["predictions"]
        ]
        for a, b in zip(single["predictions"], batched["predictions"]):
            assert a["score"] == pytest.approx(b["score"], abs=1e-5)


def test_progress_is_shown_on_stderr_only_for_several_files(tmp_path):
    pictures = [str(_write_picture(tmp_path / f"{n}.png", seed=n)) for n in range(3)]

    several_out, several_err = _classify("--json", *pictures)
    _, single_err = _classify("--json", pictures[0])

    assert "3/3" in several_err
    assert len(_json_lines(several_out)) == 3  # stdout stays pure JSON
    assert "1/1" not in single_err


def test_without_a_prepared_model_it_fails_with_a_clear_message(no_model, tmp_path):
    picture = _write_picture(tmp_path / "picture.png", seed=8)

    out, _, error = _classify_failing(str(picture))

    assert "prepare_model" in str(error)
    assert out == ""


def test_from_the_shell_the_exit_code_says_whether_every_file_was_classified(
    prepared_models_dir, tmp_path
):
    good = _write_picture(tmp_path / "good.png", seed=9)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"")

    all_good = _run_in_shell(prepared_models_dir, "--json", str(good))
    one_bad = _run_in_shell(prepared_models_dir, "--json", str(good), str(bad))

    assert all_good.returncode == 0, all_good.stderr
    assert one_bad.returncode != 0
    assert [line.get("error") for line in _json_lines(one_bad.stdout)] == [
        None,
        "The file is empty.",
    ]
    assert "CommandError: 1 of 2 files could not be classified." in one_bad.stderr


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_it_exits_cleanly_while_its_runner_thread_is_still_inside_torch(
    prepared_models_dir, tmp_path, backend
):
    picture = _write_picture(tmp_path / "picture.png", seed=10)

    finished = _run_in_shell(
        prepared_models_dir, "--json", str(picture), backend=backend, before=RUNNER_STILL_IN_TORCH
    )

    # Left running into interpreter teardown, the runner aborts the process (SIGABRT,
    # "terminate called without an active exception") after the result was printed.
    assert finished.returncode == 0, finished.stderr
    (line,) = _json_lines(finished.stdout)
    assert line["path"] == str(picture) and len(line["predictions"]) == 3


@pytest.mark.slow
def test_run_after_run_with_every_core_busy_each_exits_0_with_the_same_results(
    prepared_models_dir, tmp_path, every_core_busy
):
    picture = _write_picture(tmp_path / "picture.png", seed=11)
    (expected,) = get_classifier().classify([decode_image(picture.read_bytes()).image], top_k=3)

    for run in range(RUNS_WITH_EVERY_CORE_BUSY):
        backend = BACKENDS[run % len(BACKENDS)]
        finished = _run_in_shell(prepared_models_dir, "--json", str(picture), backend=backend)

        assert finished.returncode == 0, f"run {run + 1} ({backend}): {finished.stderr}"
        (line,) = _json_lines(finished.stdout)
        assert (line["path"], line["model"], line["model_version"]) == (
            str(picture),
            expected.model.name,
            expected.model.version,
        )
        assert [p["index"] for p in line["predictions"]] == [
            p.index for p in expected.predictions
        ]
        for printed, computed in zip(line["predictions"], expected.predictions):
            assert printed["score"] == pytest.approx(computed.score, abs=1e-4)  # backends differ
