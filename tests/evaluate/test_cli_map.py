"""``darknet_torch map``: argument forms, what it prints, exit codes and error messages.

Runs on a tiny dataset with the "mini" yolov3-tiny (4 classes, 128x128, Darknet-saved weights); the numbers
themselves are checked against Darknet in test_runner.py.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from darknet_torch.cli.main import main


@pytest.fixture(scope="module")
def mini(golden_dir) -> tuple[Path, Path]:
    folder = golden_dir / "mini" / "yolov3-tiny"
    return folder / "yolov3-tiny.cfg", folder / "yolov3-tiny.weights"


@pytest.fixture()
def dataset(tmp_path) -> Path:
    """A .data file with 3 images (one without label file, one with a malformed line), 4 classes."""
    from PIL import Image

    rng = np.random.default_rng(1)
    images, labels = tmp_path / "images" / "val2017", tmp_path / "labels" / "val2017"
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    for name in ("a", "b", "c"):
        Image.fromarray(rng.integers(0, 256, (100, 140, 3), dtype=np.uint8)).save(images / f"{name}.jpg")
    (labels / "a.txt").write_text("0 0.5 0.5 0.4 0.4\n2 0.3 0.3 0.2 0.2\n")
    (labels / "b.txt").write_text("1 0.5 0.5 0.4\n")
    (tmp_path / "val.txt").write_text("images/val2017/a.jpg\nimages/val2017/b.jpg\nimages/val2017/c.jpg\n")
    (tmp_path / "mini.names").write_text("w\nx\ny\nz\n")
    data = tmp_path / "mini.data"
    data.write_text("classes = 4\nvalid = val.txt\nnames = mini.names\n")
    return data


def run_map(capsys, *args: object) -> tuple[int, str, str]:
    code = main(["map", *map(str, args), "--workers", "0", "--no-progress"])
    out, err = capsys.readouterr()
    return code, out, err


def test_prints_the_table_and_darknets_summary_lines(capsys, dataset, mini):
    cfg, weights = mini
    code, out, err = run_map(capsys, "--data", dataset, "--cfg", cfg, "--weights", weights)
    assert code == 0
    assert out.startswith("labels found for 2 of 3 images (2 boxes); 1 missing label file; 1 label line problem\n")
    assert re.search(r"\| class_id \| name +\| AP \(%\) \| truths \| +TP \| +FP \|\n", out)
    assert " for conf_thresh = 0.25, precision = " in out
    assert " IoU threshold = 50 %, used Area-Under-Curve for each unique Recall \n" in out
    assert " mean average precision (mAP@0.50) = " in out
    assert f"{dataset.parent / 'labels' / 'val2017' / 'b.txt'}:1: 4 fields, expected 5" in err
    assert f"{dataset.parent / 'labels' / 'val2017' / 'c.txt'}: label file not found" in err


def test_darknets_positional_form_and_single_dash_options(capsys, dataset, mini):
    cfg, weights = mini
    code, out, _ = run_map(capsys, dataset, cfg, weights, "-points", 11, "-iou_thresh", 0.75, "-thresh", 0.3)
    assert code == 0
    assert " IoU threshold = 75 %, used 11 Recall-points \n" in out
    assert " mean average precision (mAP@0.75) = " in out
    assert " for conf_thresh = 0.30, TP = " in out


def test_coco_option_adds_pycocotools_summary(capsys, dataset, mini):
    pytest.importorskip("pycocotools")
    cfg, weights = mini
    code, out, _ = run_map(capsys, dataset, cfg, weights, "--coco", "--points", 101)
    assert code == 0
    assert "COCO metrics (pycocotools) of the same detections:" in out
    assert "Average Precision  (AP) @[ IoU=0.50      | area=   all | maxDets=100 ]" in out


def test_unreadable_image_gives_exit_1_after_the_report(capsys, dataset, mini):
    bad = dataset.parent / "images" / "val2017" / "b.jpg"
    bad.write_bytes(b"\x00garbage")
    code, out, err = run_map(capsys, dataset, *mini)
    assert code == 1
    assert " mean average precision (mAP@0.50) = " in out
    assert str(bad) in err and "error:" in err


@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: d.write_text("classes = 4\nnames = mini.names\n"), "no 'valid =' entry"),
    (lambda d: d.write_text("classes = 4\nvalid = val.txt\n"), "no 'names =' entry"),
    (lambda d: d.write_text("classes = 3\nvalid = val.txt\nnames = mini.names\n"),
     "classes=3, but .* has classes=4"),
    (lambda d: (d.parent / "mini.names").write_text("w\nx\n"), "2 names, num_classes=2, .* classes=4"),
])
def test_configuration_errors_exit_2_with_the_file_named(capsys, dataset, mini, edit, message):
    edit(dataset)
    code, out, err = run_map(capsys, dataset, *mini)
    assert code == 2 and out == ""
    assert err.startswith("error: ")
    assert re.search(message, err), err


@pytest.mark.parametrize("args", [["--points", "1"], ["--iou-thresh", "1.5"], ["--batch-size", "0"]])
def test_bad_options_exit_2(capsys, dataset, mini, args):
    with pytest.raises(SystemExit) as exited:  # argparse's usage error (tests/cli/test_argument_ranges.py)
        run_map(capsys, dataset, *mini, *args)
    assert exited.value.code == 2 and f"error: argument {args[0]}" in capsys.readouterr().err


def test_positional_and_option_forms_cannot_be_mixed(capsys, dataset, mini):
    code, _, err = run_map(capsys, dataset, *mini, "--data", dataset)
    assert code == 2 and "either positionally or with --data" in err


def test_plots_option_writes_the_files_and_checks_the_folder_first(capsys, dataset, mini, tmp_path):
    cfg, weights = mini
    code, out, _ = run_map(capsys, "--data", dataset, "--cfg", cfg, "--weights", weights, "--plots", tmp_path / "p")
    assert code == 0 and f"10 plots and tables written to {tmp_path / 'p'}" in out
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == [
        "confidence_curves.csv", "confusion_matrix.csv", "confusion_matrix.png", "confusion_matrix_normalized.png",
        "f1_curve.png", "p_curve.png", "per_class.csv", "pr_curve.csv", "pr_curve.png", "r_curve.png"]
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, out, err = run_map(capsys, "--data", dataset, "--cfg", cfg, "--weights", weights, "--plots", blocker / "p")
    assert code == 2 and str(blocker / "p") in err and "mean average precision" not in out
