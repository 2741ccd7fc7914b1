"""``darknet_torch detect`` end to end: a folder with good and bad images, the files it writes, the exit status."""
from __future__ import annotations

import io
import json
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from PIL import Image

from darknet_torch.cli.main import main

GOOD = ("dog", "horses")


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height (a decompression bomb as far as the header goes)."""
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, "PNG")
    data = buffer.getvalue()
    ihdr = struct.pack(">II", width, height) + data[24:29]
    return data[:16] + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)) + data[33:]


@pytest.fixture()
def photos(tmp_path: Path, shared_dir: Path) -> Path:
    """2 real photos, a corrupt JPEG, a zero-byte file, a text file named .png, and a 16000x16000 PNG header."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in GOOD:
        shutil.copy(shared_dir / "images" / f"{name}.jpg", folder / f"{name}.jpg")
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 4)
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.png").write_text("not an image\n")
    (folder / "huge.png").write_bytes(_png_claiming(16000, 16000))
    return folder


@pytest.fixture()
def model_args(golden_dir: Path, real_weights: Path) -> list[str]:
    return ["--cfg", str(golden_dir / "real" / "yolov3-tiny_mask123.cfg"), "--weights", str(real_weights),
            "--workers", "0", "--no-progress"]


def test_folder_run_writes_consistent_outputs_and_reports_bad_files(photos, model_args, tmp_path, capsys):
    out = tmp_path / "out"
    status = main(["detect", str(photos), "--output", str(out), "--save-labels", "--ext-output", "--batch-size",
                   "2", *model_args])
    stdout, stderr = capsys.readouterr()
    assert status == 1

    for bad in ("corrupt.jpg", "empty.jpg", "notes.png", "huge.png"):
        assert str(photos / bad) in stderr, f"no error naming {bad}"
    assert "more than max_pixels" in stderr and "0 bytes" in stderr

    # Darknet's -ext_output lines for the good images (Darknet's own printout for dog.jpg, mask 1,2,3, resize).
    assert f"{photos / 'dog.jpg'}: Predicted in" in stdout
    assert "truck: 62%\t(left_x:  470   top_y:   81   width:  219   height:   95)" in stdout
    assert "2 of 6 images detected" in stdout

    frames = json.loads((out / "results.json").read_text())
    assert [Path(f["filename"]).name for f in frames] == ["dog.jpg", "horses.jpg"]
    for frame in frames:
        name = Path(frame["filename"]).stem
        with Image.open(out / f"{name}.jpg") as annotated, Image.open(photos / f"{name}.jpg") as source:
            assert annotated.size == source.size
        # Each label line is the best class of one JSON box, same coordinates (Darknet prints %2.4f).
        best: dict[tuple, tuple[float, int]] = {}
        for obj in frame["objects"]:
            c = obj["relative_coordinates"]
            box = (c["center_x"], c["center_y"], c["width"], c["height"])
            best[box] = max(best.get(box, (0.0, -1)), (obj["confidence"], -obj["class_id"]))
        expected = sorted((-cls, *box) for box, (_, cls) in best.items())
        lines = (out / "labels" / f"{name}.txt").read_text().splitlines()
        got = sorted((int(p[0]), *(float(v) for v in p[1:])) for p in (line.split() for line in lines))
        assert len(got) == len(expected) > 0
        assert [g[0] for g in got] == [e[0] for e in expected]
        assert [v for g in got for v in g[1:]] == pytest.approx([v for e in expected for v in e[1:]], abs=5e-5)
    assert sorted(p.name for p in out.iterdir()) == ["dog.jpg", "horses.jpg", "labels", "results.json"]


def test_coco_results_written_for_numeric_image_names(tmp_path, shared_dir, model_args):
    folder = tmp_path / "coco"
    folder.mkdir()
    shutil.copy(shared_dir / "images" / "dog.jpg", folder / "000000000042.jpg")
    out = tmp_path / "out"
    assert main(["detect", str(folder), "--output", str(out), "--no-save-img", *model_args]) == 0
    records = json.loads((out / "coco_results.json").read_text())
    frames = json.loads((out / "results.json").read_text())
    assert len(records) == len(frames[0]["objects"]) > 0
    assert {r["image_id"] for r in records} == {42}
    assert {r["category_id"] for r in records} >= {18}  # dog = class 16 = COCO category 18


def test_empty_folder_is_a_usage_error_naming_it(tmp_path, model_args, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["detect", str(tmp_path / "empty"), "--output", str(tmp_path / "out"), *model_args]) == 2
    stderr = capsys.readouterr().err
    assert str(tmp_path / "empty") in stderr and "no images" in stderr


def test_unwritable_output_is_a_usage_error_naming_it(tmp_path, photos, model_args, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert main(["detect", str(photos / "dog.jpg"), "--output", str(blocker / "out"), *model_args]) == 2
    stderr = capsys.readouterr().err
    assert str(blocker / "out") in stderr and "cannot write" in stderr


def test_missing_weights_say_what_to_run(tmp_path, photos, golden_dir, capsys):
    status = main(["detect", str(photos / "dog.jpg"), "--cfg", str(golden_dir / "real" / "yolov3-tiny.cfg"),
                   "--weights", str(tmp_path / "yolov3-tiny.weights"), "--output", str(tmp_path / "out")])
    assert status == 2
    assert "python weights/download_weights.py yolov3-tiny" in capsys.readouterr().err


def test_detect_py_wrapper_runs_the_cli(tmp_path, photos, model_args, repo_root):
    result = subprocess.run([sys.executable, str(repo_root / "detect.py"), str(photos / "dog.jpg"), "--output",
                             str(tmp_path / "out"), "--letter-box", "--ext-output", *model_args],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    # Darknet's -letter_box printout for dog.jpg with mask 1,2,3.
    assert "truck: 56%\t(left_x:  481   top_y:   82   width:  194   height:   89)" in result.stdout
    assert (tmp_path / "out" / "dog.jpg").is_file()


@pytest.mark.parametrize(("extra", "message"), [
    (["--img-size", "400"], "multiples of 32"),
    (["--names", "three.names"], "3 names but the network has classes=80"),
    (["--data", "obj.data"], "3 names but the network has classes=80"),
])
def test_bad_options_are_usage_errors(extra, message, tmp_path, photos, model_args, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("three.names").write_text("a\nb\nc\n")
    Path("obj.data").write_text("classes = 3\nnames = three.names\n")
    status = main(["detect", str(photos / "dog.jpg"), "--output", str(tmp_path / "out"), *model_args, *extra])
    assert status == 2 and message in capsys.readouterr().err


def test_other_input_size_and_plain_nms_run(tmp_path, photos, model_args, capsys):
    status = main(["detect", str(photos / "dog.jpg"), "--output", str(tmp_path / "out"), "--img-size", "320", "608",
                   "--nms-kind", "plain", "--ext-output", *model_args])
    assert status == 0 and "dog: " in capsys.readouterr().out


def test_readme_first_command_finds_the_samples_objects_with_yolov4_tiny(repo_root, yolov4_tiny_weights, tmp_path,
                                                                         monkeypatch, capsys):
    """``python detect.py`` with every default (yolov4-tiny, data/samples): a person, a cat and a cup (README)."""
    monkeypatch.chdir(repo_root)  # the defaults are paths relative to the checkout, as in the README
    # exit 0 includes a strict load: a weights file that does not fit the cfg exactly is an error (exit 2)
    assert main(["detect", "--output", str(tmp_path), "--no-save-img", "--no-progress", "--workers", "0"]) == 0
    assert "4 of 4 images detected" in capsys.readouterr().out
    found = {Path(entry["filename"]).stem: {obj["name"] for obj in entry["objects"]}
             for entry in json.loads((tmp_path / "results.json").read_text())}
    assert {"astronaut", "chelsea", "coffee", "rocket"} == set(found)
    assert "person" in found["astronaut"] and "cat" in found["chelsea"] and "cup" in found["coffee"]
