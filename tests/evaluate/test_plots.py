"""Evaluation plots (``map --plots``): the files exist and are valid, and the plotted numbers are the printout's.

A small synthetic case checks every number against values worked out by hand (in the comments); a real case
(8 coco128 images, yolov3-tiny) checks the CSVs against ``score_detections`` and the printed summary line.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from darknet_torch.evaluate.ap import average_precision, format_map_report, match_detections, score_matched
from darknet_torch.evaluate.plots import confidence_curves, confusion_matrix, write_evaluation_plots

NAMES = ["cat", "dog"]
A, B, C, D = (0.25, 0.25, 0.2, 0.2), (0.75, 0.75, 0.2, 0.2), (0.5, 0.9, 0.1, 0.1), (0.2, 0.8, 0.1, 0.1)
# Image 0: truths cat@A, dog@B. Rows (array order): cat@A .9 (TP), cat@A .6 (duplicate: FP), cat@B .5 (FP on the
# dog), dog@C .3 (FP on nothing). Image 1: truths dog@B, cat@D (never detected). Rows: dog@B .8 (TP), dog@B .1 (FP).
DETECTIONS = [np.array([[*A, 0, 0.9], [*A, 0, 0.6], [*B, 0, 0.5], [*C, 1, 0.3]], np.float32),
              np.array([[*B, 1, 0.8], [*B, 1, 0.1]], np.float32)]
TRUTHS = [np.array([[0, *A], [1, *B]], np.float32), np.array([[1, *B], [0, *D]], np.float32)]


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture()
def synthetic():
    matched = match_detections(DETECTIONS, TRUTHS, 2)
    return matched, score_matched(matched, 0.5, 0, 0.25)


def test_synthetic_confusion_matrix_by_hand(synthetic):
    matched, _ = synthetic
    # counts[predicted, true], index 2 = background: cat TP; cat duplicate -> background; cat on the dog -> (cat,
    # dog); dog TP; dog on nothing -> background; the undetected cat -> (background, cat). Dog .1 is below 0.25.
    expected = [[1, 1, 1], [0, 1, 1], [1, 0, 0]]
    matrix = confusion_matrix(matched, 0.25, 0.5)
    assert matrix.counts.tolist() == expected
    normalized = matrix.normalized()
    assert normalized[:, 0].tolist() == [0.5, 0.0, 0.5] and normalized[:, 2].tolist() == [0.5, 0.5, 0.0]


def test_synthetic_curves_by_hand(synthetic):
    matched, result = synthetic
    # cat ranks .9 TP, .6 FP, .5 FP over 2 cat truths; dog ranks .8 TP, .3 FP, .1 FP over 2 dog truths
    for class_id in (0, 1):
        confidence, precision, recall = matched.pr_curve(class_id)
        assert precision.tolist() == [1.0, 0.5, 1 / 3] and recall.tolist() == [0.5, 0.5, 0.5]
    assert matched.pr_curve(0)[0].tolist() == pytest.approx([0.9, 0.6, 0.5])
    assert result.ap.tolist() == [0.5, 0.5] and result.map == 0.5
    # pooled: .9 T, .8 T, .6 F, .5 F, .3 F, .1 F over 4 truths
    _, precision, recall = matched.pr_curve(None)
    assert precision.tolist() == pytest.approx([1, 1, 2 / 3, 2 / 4, 2 / 5, 2 / 6])
    assert recall.tolist() == [0.25, 0.5, 0.5, 0.5, 0.5, 0.5]
    curves = confidence_curves(matched, [0.0, 0.25, 0.5])
    # > 0: all rows; > 0.25: cat .9 .6 .5 and dog .8 .3; > 0.5: cat .9 .6, dog .8
    assert curves.tp.tolist() == [[1, 1, 1], [1, 1, 1]]
    assert curves.fp.tolist() == [[2, 2, 1], [2, 1, 0]]
    precision, recall, f1 = curves.overall()
    assert precision.tolist() == pytest.approx([2 / 6, 2 / 5, 2 / 3])
    assert recall.tolist() == [0.5, 0.5, 0.5]
    assert f1[1] == pytest.approx(2 * 0.4 * 0.5 / 0.9)


def test_synthetic_files(tmp_path, synthetic):
    matched, result = synthetic
    files = write_evaluation_plots(matched, result, NAMES, tmp_path / "plots")
    names = {path.name for path in files}
    assert names == {"pr_curve.png", "f1_curve.png", "p_curve.png", "r_curve.png", "confusion_matrix.png",
                     "confusion_matrix_normalized.png", "per_class.csv", "pr_curve.csv", "confidence_curves.csv",
                     "confusion_matrix.csv"}
    for path in files:
        if path.suffix == ".png":
            with Image.open(path) as image:
                image.verify()
                assert image.format == "PNG"
    rows = read_csv(tmp_path / "plots" / "per_class.csv")
    assert [(r["name"], float(r["ap"]), int(r["truths"]), int(r["tp"]), int(r["fp"]), float(r["precision"]),
             float(r["recall"])) for r in rows] == [("cat", 0.5, 2, 1, 2, 1 / 3, 0.5), ("dog", 0.5, 2, 1, 1, 0.5, 0.5)]
    with (tmp_path / "plots" / "confusion_matrix.csv").open() as handle:
        matrix = list(csv.reader(handle))
    assert matrix == [["predicted \\ true", "cat", "dog", "background"], ["cat", "1", "1", "1"],
                      ["dog", "0", "1", "1"], ["background", "1", "0", "0"]]


def check_against_report(folder: Path, matched, result, names) -> None:
    """The CSVs hold the printout's numbers: per-class AP/truths/TP/FP, the PR points each AP integrates, the
    summary line's precision/recall/F1/TP/FP at --thresh, and a confusion matrix whose diagonal is the TP column."""
    rows = read_csv(folder / "per_class.csv")
    assert [r["name"] for r in rows] == list(names)
    assert [float(r["ap"]) for r in rows] == result.ap.tolist()
    assert [int(r["truths"]) for r in rows] == result.truths_per_class.tolist()
    assert [int(r["tp"]) for r in rows] == result.tp_per_class.tolist()
    assert [int(r["fp"]) for r in rows] == result.fp_per_class.tolist()

    pr = read_csv(folder / "pr_curve.csv")
    for class_id in np.flatnonzero(result.truths_per_class):
        points = [r for r in pr if int(r["class_id"]) == class_id]
        precision = np.array([float(r["precision"]) for r in points])
        recall = np.array([float(r["recall"]) for r in points])
        assert average_precision(precision, recall, result.points) == result.ap[class_id]

    overall = {r["threshold"]: r for r in read_csv(folder / "confidence_curves.csv") if r["class_id"] == "-1"}
    at_thresh = overall[f"{result.conf_thresh:.2f}"]
    assert (int(at_thresh["tp"]), int(at_thresh["fp"])) == (result.tp, result.fp)
    printed = format_map_report(result, names)
    for key in ("precision", "recall"):
        assert f"{key} = {float(at_thresh[key]):.2f}" in printed
    assert f"F1-score = {float(at_thresh['f1']):.2f}" in printed
    assert float(at_thresh["precision"]) == pytest.approx(result.precision, abs=1e-6)
    assert float(at_thresh["recall"]) == pytest.approx(result.recall, abs=1e-6)

    # at other thresholds too, the curves count what the printout would print with that -thresh
    curves = confidence_curves(matched, [0.1, 0.5, 0.9])
    for k, thresh in enumerate((0.1, 0.5, 0.9)):
        printout = score_matched(matched, result.iou_thresh, result.points, thresh)
        assert curves.tp[:, k].tolist() == printout.tp_per_class.tolist()
        assert curves.fp[:, k].tolist() == printout.fp_per_class.tolist()

    with (folder / "confusion_matrix.csv").open() as handle:
        matrix = np.array([[int(v) for v in row[1:]] for row in list(csv.reader(handle))[1:]])
    assert np.diag(matrix)[:-1].tolist() == result.tp_per_class.tolist()
    assert matrix[:-1].sum(axis=1).tolist() == (result.tp_per_class + result.fp_per_class).tolist()
    assert matrix[:, :-1].sum(axis=0).tolist() == result.truths_per_class.tolist()


def test_synthetic_csvs_hold_the_printed_numbers(tmp_path, synthetic):
    matched, result = synthetic
    write_evaluation_plots(matched, result, NAMES, tmp_path)
    check_against_report(tmp_path, matched, result, NAMES)


def test_real_coco128_subset_plots_equal_score_detections(tmp_path, coco128_dir, real_weights, repo_root):
    from darknet_torch.config.data_files import read_data_file, read_image_list, read_names
    from darknet_torch.evaluate.runner import collect_detections, score_detections
    from darknet_torch.model.loading import load_model

    data = read_data_file(coco128_dir / "coco128.data")
    paths, names = read_image_list(data.valid)[:8], read_names(data.names)
    model = load_model(repo_root / "cfg" / "yolov3-tiny.cfg", real_weights)
    detections = collect_detections(model, paths, 80, workers=0, progress=False)
    report = score_detections(detections, points=11)
    assert report.matched is not None and report.darknet.tp > 0
    files = write_evaluation_plots(report.matched, report.darknet, names, tmp_path)
    assert all(path.stat().st_size > 0 for path in files)
    check_against_report(tmp_path, report.matched, report.darknet, names)
