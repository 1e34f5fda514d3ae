"""`manage.py classify PATH...`: an aligned table or JSON lines, folders walked
recursively, bad files reported while good ones still get results, non-zero exit on
any failure."""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from PIL import Image

from recognition.configured_classifier import get_classifier
from recognition.engine.images import decode_image

REPO = Path(__file__).resolve().parents[1]


def _write_picture(path: Path, seed: int, image_format: str = "PNG") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format=image_format)
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
    environment = {
        **os.environ,
        "RECOGNITION_DATA_DIR": str(prepared_models_dir.parent),
        "SECRET_KEY": "test",
    }

    def run(*paths: Path) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "manage.py", "classify", "--json", *map(str, paths)],
            cwd=REPO,
            env=environment,
            capture_output=True,
            text=True,
            timeout=120,
        )

    all_good, one_bad = run(good), run(good, bad)

    assert all_good.returncode == 0, all_good.stderr
    assert one_bad.returncode != 0
    assert [line.get("error") for line in _json_lines(one_bad.stdout)] == [
        None,
        "The file is empty.",
    ]
    assert "CommandError: 1 of 2 files could not be classified." in one_bad.stderr
