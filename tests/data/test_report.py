"""The pre-training data report: coco128's known counts, and every kind of bad input reported clearly."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from darknet_torch.config.data_files import read_image_list
from darknet_torch.data.report import SHOWN_PROBLEMS, data_report
from darknet_torch.data.training import training_report
from darknet_torch.errors import CfgError, DataError


def write_image(path: Path, size: tuple[int, int] = (64, 48)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (90, 120, 200)).save(path)
    return path


def make_dataset(root: Path, labels: dict[str, str | None], image_dir: str = "images") -> list[Path]:
    """Images ``root/<image_dir>/<name>.jpg`` with label text (None = no label file) beside them."""
    images = []
    for name, text in labels.items():
        image = write_image(root / image_dir / f"{name}.jpg")
        if text is not None:
            image.with_suffix(".txt").write_text(text)
        images.append(image)
    return images


def test_coco128_counts(coco128_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the list's relative entries are found beside it
    report = training_report(coco128_dir / "coco128.data", 80)
    assert len(report.image_paths) == 128 and report.images_found == 128 and report.image_errors == ()
    assert report.labels_found == 126
    assert sorted(path.name for path in report.missing_labels) == ["000000000250.txt", "000000000508.txt"]
    assert report.empty_labels == () and report.issues == ()
    assert len(report.boxes) == 929  # golden/README.md: Darknet's detector map counts 929 truths
    # boxes per class, counted naively from the label files of the listed images (the labels folder holds two more)
    naive: Counter[int] = Counter()
    for entry in (coco128_dir / "train.txt").read_text().split():
        label = coco128_dir / entry.replace("images/", "labels/").replace(".jpg", ".txt")
        if label.exists():
            naive.update(int(line.split()[0]) for line in label.read_text().splitlines() if line.strip())
    assert sum(naive.values()) == 929
    assert report.class_counts.tolist() == [naive[c] for c in range(80)]
    assert report.class_counts[0] == naive[0] > 200  # person dominates
    report.check()

    text = report.format()
    assert "128 images listed, 128 found, 0 unusable" in text
    assert "126 found, 2 missing" in text and "929 usable" in text
    assert "000000000250.txt" in text and "000000000508.txt" in text
    assert "| traffic light |" in text
    assert len(text.splitlines()) <= 40  # one screen


def test_bad_labels_are_listed_with_path_line_and_never_dropped_silently(tmp_path):
    images = make_dataset(tmp_path, {
        "good": "0 0.5 0.5 0.2 0.2\n1 0.25 0.25 0.1 0.1\n",
        "empty": "",
        "bad_class": "0 0.5 0.5 0.2 0.2\n2 0.5 0.5 0.2 0.2\n",
        "outside": "1 1.2 0.5 0.2 0.2\n0 0.5 -0.1 0.2 0.3\n",
        "syntax": "0 0.5 0.5 0.2\n\n1 0.5 0.5 0.2 0.2\n",
        "nolabel": None,
    })
    report = data_report(images, num_classes=2, names=["cat", "dog"])
    labels = tmp_path / "images"
    assert report.images_found == 6 and report.labels_found == 5
    assert report.missing_labels == (labels / "nolabel.txt",)
    assert report.empty_labels == (labels / "empty.txt",)
    issues = [(issue.path.name, issue.line, issue.skipped) for issue in report.issues]
    assert issues == [("bad_class.txt", 2, True), ("outside.txt", 1, False), ("outside.txt", 2, False),
                      ("syntax.txt", 1, True)]
    # usable rows: good 2, bad_class 1, outside 2 (kept, as Darknet's read_boxes), syntax 1
    assert len(report.boxes) == 6 and report.class_counts.tolist() == [3, 3]
    np.testing.assert_array_equal(report.labels_of(2), np.float32([[0, 0.5, 0.5, 0.2, 0.2]]))
    assert report.labels_of(1).shape == (0, 5) and report.labels_of(5).shape == (0, 5)
    report.check()  # label problems do not stop training

    text = report.format()
    assert f"{labels / 'bad_class.txt'}:2: class 2 must be in [0, 1]; line skipped" in text
    assert f"{labels / 'outside.txt'}:1: cx = 1.2 is outside [0, 1]" in text
    assert f"{labels / 'outside.txt'}:2: cy = -0.1 is outside [0, 1]" in text
    assert f"{labels / 'syntax.txt'}:1: 4 fields, expected 5" in text
    assert "label lines: 2 skipped, 2 kept with a warning" in text
    assert "5 found, 1 missing" in text and "1 empty" in text
    assert str(labels / "nolabel.txt") in text


def test_long_problem_lists_are_cut_after_20(tmp_path):
    bad = "".join(f"7 0.5 0.5 0.1 0.1\n" for _ in range(SHOWN_PROBLEMS + 5))
    images = make_dataset(tmp_path, {"many": bad + "0 0.5 0.5 0.1 0.1\n"})
    text = data_report(images, num_classes=1).format()
    assert f"many.txt:{SHOWN_PROBLEMS}: class 7" in text
    assert f"many.txt:{SHOWN_PROBLEMS + 1}:" not in text
    assert f"... and 5 more, in {tmp_path / 'images' / 'many.txt'} (5)" in text  # the rest keep their file named


def test_missing_image_refuses_training_and_names_the_path(tmp_path):
    images = make_dataset(tmp_path, {"a": "0 0.5 0.5 0.2 0.2\n"})
    ghost = tmp_path / "images" / "ghost.jpg"
    report = data_report([*images, ghost], num_classes=1)
    assert report.images_found == 1 and report.image_errors == (f"{ghost}: image file not found",)
    with pytest.raises(DataError, match="1 of 2 training images cannot be used") as info:
        report.check()
    assert f"{ghost}: image file not found" in str(info.value)  # the report is part of the error


def test_unknown_image_extension_is_an_error(tmp_path):
    images = make_dataset(tmp_path, {"a": "0 0.5 0.5 0.2 0.2\n"})
    gif = tmp_path / "images" / "b.gif"
    gif.write_bytes(b"GIF89a")
    report = data_report([*images, gif], num_classes=1)
    assert len(report.image_errors) == 1 and "cannot infer the label file name" in report.image_errors[0]
    with pytest.raises(DataError, match="cannot be used"):
        report.check()


def test_missing_image_with_unknown_extension_counts_once(tmp_path):
    """Both reasons used to be two entries for one image: '2 found' of 3 listed became 1 (or -1 for a list of one)."""
    images = make_dataset(tmp_path, {"a": "0 0.5 0.5 0.2 0.2\n", "b": "0 0.5 0.5 0.2 0.2\n"})
    ghost = tmp_path / "images" / "ghost.gif"
    report = data_report([*images, ghost], num_classes=1)
    assert report.images_found == 2 and len(report.image_errors) == 1
    assert report.image_errors[0].startswith(f"{ghost}: image file not found; and cannot infer the label file name")
    assert report.labels_found == 2 and report.missing_labels == ()
    assert "Training data: 3 images listed, 2 found, 1 unusable" in report.format()
    with pytest.raises(DataError, match="1 of 3 training images cannot be used"):
        report.check()


def test_no_box_at_all_refuses_training(tmp_path):
    images = make_dataset(tmp_path, {"a": None, "b": ""})
    with pytest.raises(DataError, match="no usable box in any label file") as info:
        data_report(images, num_classes=3).check()
    assert str(tmp_path / "images" / "a.txt") in str(info.value)


def test_names_count_mismatch_is_a_warning(tmp_path):
    images = make_dataset(tmp_path, {"a": "0 0.5 0.5 0.2 0.2\n"})
    report = data_report(images, num_classes=3, names=["x", "y"])
    assert report.warnings == ("2 class names for classes=3",)
    assert "warning: 2 class names for classes=3" in report.format()


def write_data(tmp_path: Path, lines: str) -> Path:
    data = tmp_path / "set.data"
    data.write_text(lines)
    return data


def test_data_file_pointing_to_a_missing_list(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = write_data(tmp_path, "classes = 2\ntrain = lists/nope.txt\n")
    with pytest.raises(DataError, match="image list not found") as info:
        training_report(data, 2)
    assert f"{data}: train = {tmp_path / 'lists' / 'nope.txt'}" in str(info.value)


def test_data_file_without_train_uses_darknets_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = write_data(tmp_path, "classes = 2\n")
    with pytest.raises(DataError, match=r"train \(not set; Darknet's default data/train.txt\)"):
        training_report(data, 2)
    images = make_dataset(tmp_path / "data", {"a": "1 0.5 0.5 0.2 0.2\n"})
    (tmp_path / "data" / "train.txt").write_text(f"{images[0]}\n")
    assert len(training_report(data, 2).boxes) == 1


def test_data_file_classes_must_match_the_cfg(tmp_path):
    data = write_data(tmp_path, "classes = 3\ntrain = train.txt\n")
    with pytest.raises(CfgError, match="classes=3, but the cfg's last detection layer has classes=2"):
        training_report(data, 2)


def test_list_with_missing_images_names_path_and_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    images = make_dataset(tmp_path, {"a": "0 0.5 0.5 0.2 0.2\n"})
    (tmp_path / "train.txt").write_text(f"{images[0]}\nimages/missing.jpg\n")
    data = write_data(tmp_path, "train = train.txt\nnames = names.txt\n")
    (tmp_path / "names.txt").write_text("thing\n")
    with pytest.raises(DataError, match=r"train.txt:2: image not found: 'images/missing.jpg'"):
        training_report(data, 1)


def test_relative_list_entries_resolve_beside_the_list(tmp_path, monkeypatch):
    root = tmp_path / "set"
    make_dataset(root, {"a": "0 0.5 0.5 0.2 0.2\n", "b": "0 0.1 0.1 0.1 0.1\n"})
    (root / "train.txt").write_text("images/a.jpg\nimages/b.jpg\n")
    data = write_data(root, "classes = 1\ntrain = train.txt\nnames = names.txt\nbogus = 1\n")
    (root / "names.txt").write_text("thing")
    monkeypatch.chdir(tmp_path)  # neither the .data entries nor the list entries exist from here
    report = training_report(data, 1)
    assert report.image_paths == (root / "images" / "a.jpg", root / "images" / "b.jpg")
    assert report.names == ("thing",) and len(report.boxes) == 2
    assert any("key 'bogus' is not used" in warning for warning in report.warnings)
    assert read_image_list(root / "train.txt") == list(report.image_paths)


def test_cwd_relative_list_entries_find_labels_where_darknet_does(tmp_path, monkeypatch):
    """Run from the data set's folder with ``images/train2017/a.jpg`` in the list, Darknet reads the label beside the
    image (no leading ``/``, so no ``labels/`` substitution): so does the report."""
    monkeypatch.chdir(tmp_path)
    make_dataset(tmp_path, {"a": "0 0.5 0.5 0.2 0.2\n"}, image_dir="images/train2017")
    (tmp_path / "train.txt").write_text("images/train2017/a.jpg\n")
    report = training_report(write_data(tmp_path, "classes = 1\ntrain = train.txt\n"), 1)
    assert report.label_paths == (tmp_path / "images" / "train2017" / "a.txt",)
    assert len(report.boxes) == 1 and report.missing_labels == ()
