"""Label-file lookup (Darknet's replace_image_to_label) and label parsing with per-line reports."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from darknet_torch.config.data_files import read_image_list
from darknet_torch.data.augment_geometry import Crop, transform_boxes
from darknet_torch.data.labels import label_file_for, label_path_for, read_labels
from darknet_torch.errors import DataError


@pytest.mark.parametrize(("image", "label"), [
    ("/d/coco/images/train2017/1.jpg", "/d/coco/labels/train2017/1.txt"),
    ("/d/coco/images/val2017/1.jpg", "/d/coco/labels/val2017/1.txt"),
    ("/d/coco/images/train2014/1.jpg", "/d/coco/labels/train2014/1.txt"),
    ("/d/coco/images/val2014/1.jpg", "/d/coco/labels/val2014/1.txt"),
    ("/voc/VOC2007/JPEGImages/0001.jpg", "/voc/VOC2007/labels/0001.txt"),
    ("C:\\coco\\images\\val2017\\1.JPG", "C:\\coco\\labels\\val2017\\1.txt"),
    ("C:\\voc\\JPEGImages\\1.png", "C:\\voc\\labels\\1.txt"),
    # only the first occurrence of a folder is replaced
    ("/a/JPEGImages/JPEGImages/x.png", "/a/labels/JPEGImages/x.txt"),
    # AlexeyAB has "/images/" and "/raw/" commented out: only the extension changes
    ("/data/images/x.jpg", "/data/images/x.txt"),
    ("/data/raw/x.jpg", "/data/raw/x.txt"),
    # a relative path has no leading "/", so Darknet keeps the images folder
    ("images/train2017/x.jpg", "images/train2017/x.txt"),
    # the extension is replaced only at the end; spaces and tabs around the path are trimmed
    ("/a.jpg/b.bmp", "/a.jpg/b.txt"),
    ("/a/b.jpeg \t", "/a/b.txt"),
])
def test_label_path_for_matches_replace_image_to_label(image, label):
    assert str(label_path_for(image)) == label


def test_label_file_for_reads_a_cwd_relative_entry_as_darknet_does(tmp_path, monkeypatch):
    """``images/train2017/a.jpg`` in a list, run from its folder: Darknet's substitution needs a leading ``/``, so it
    reads ``images/train2017/a.txt``; the absolute path we hold would give ``labels/train2017/a.txt``."""
    monkeypatch.chdir(tmp_path)
    image = tmp_path / "images" / "train2017" / "a.jpg"
    image.parent.mkdir(parents=True)
    assert label_file_for(image) == tmp_path / "labels" / "train2017" / "a.txt"  # the relative form's is absent
    image.with_suffix(".txt").write_text("0 0.5 0.5 0.2 0.2\n")
    assert label_file_for(image) == image.with_suffix(".txt")
    assert label_file_for(tmp_path / "other" / "b.jpg") == tmp_path / "other" / "b.txt"  # the same either way
    (tmp_path / "run").mkdir()
    monkeypatch.chdir(tmp_path / "run")  # not under the cwd: the entry was absolute or found beside the list
    assert label_file_for(image) == tmp_path / "labels" / "train2017" / "a.txt"


@pytest.mark.parametrize("extension",
                         [".jpg", ".JPG", ".jpeg", ".JPEG", ".png", ".PNG", ".bmp", ".BMP",
                          ".ppm", ".PPM", ".tiff", ".TIFF"])
def test_every_darknet_image_extension_becomes_txt(extension):
    assert label_path_for(f"/x/JPEGImages/a{extension}") == Path("/x/labels/a.txt")


@pytest.mark.parametrize("image", ["/x/a.Jpg", "/x/a.gif", "/x/a", ".jpg"])
def test_unknown_extension_is_an_error_naming_the_path(image):
    with pytest.raises(DataError, match="cannot infer the label file name") as info:
        label_path_for(image)
    assert image in str(info.value)


def test_zero_centre_is_reported_kept_for_map_and_dropped_by_training(tmp_path):
    """``cx == cy == 0``: Darknet's correct_boxes + fill_truth_detection drop the row ("Wrong annotation"), its
    validate_detector_map (read_boxes) keeps it; the report says so, the row stays for mAP."""
    path = tmp_path / "a.txt"
    path.write_text("0 0 0 0.4 0.4\n1 0 0.5 0.4 0.4\n")  # only the first has both at 0
    result = read_labels(path, num_classes=2)
    assert [str(issue) for issue in result.issues] == [
        f"{path}:1: cx = cy = 0, dropped in training as Darknet does (\"Wrong annotation\"); "
        "kept, as Darknet's read_boxes keeps it"]
    assert not result.issues[0].skipped and len(result.boxes) == 2
    trained = transform_boxes(torch.from_numpy(result.boxes), Crop(100, 100, 0, 0, 0, 0), False, 416, 416)
    assert trained[:, 0].tolist() == [1]


def test_coco128_has_labels_for_126_of_128_images(coco128_dir):
    images = read_image_list(coco128_dir / "train.txt")
    labels = [read_labels(label_path_for(image), num_classes=80) for image in images]
    assert len(labels) == 128
    missing = sorted(label.path.name for label in labels if label.missing)
    assert missing == ["000000000250.txt", "000000000508.txt"]
    assert all(label.path.parent == coco128_dir.absolute() / "labels" / "train2017"
               for label in labels)
    # golden/README.md section 4: Darknet found 929 ground-truth boxes in the 126 files
    assert sum(len(label.boxes) for label in labels) == 929
    assert [issue for label in labels if not label.missing for issue in label.issues] == []
    first = labels[0]  # 000000000009.txt begins "45 0.479492 0.688771 0.955609 0.5955"
    assert first.boxes.dtype == np.float32
    np.testing.assert_array_equal(
        first.boxes[0], np.array([45, 0.479492, 0.688771, 0.955609, 0.5955], np.float32))
    assert first.class_ids[:3].tolist() == [45, 45, 50]
    assert first.lines[:3].tolist() == [1, 2, 3]


def test_missing_label_file_is_reported_and_empty(tmp_path):
    result = read_labels(tmp_path / "nope.txt")
    assert result.missing
    assert result.boxes.shape == (0, 5)
    assert len(result.issues) == 1
    assert str(result.issues[0]).startswith(f"{tmp_path / 'nope.txt'}: label file not found")


def test_each_malformed_line_is_reported_with_path_line_and_reason(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text(
        "0 0.5 0.5 0.2 0.2\n"        # 1 good
        "1 0.5 0.5 0.2\n"            # 2 four fields
        "1 0.5 0.5 0.2 0.2 7\n"      # 3 six fields
        "1.0 0.5 0.5 0.2 0.2\n"      # 4 class not an integer
        "cat 0.5 0.5 0.2 0.2\n"      # 5 class not a number
        "2 0.5 abc 0.2 0.2\n"        # 6 cy not a number
        "2 0.5 0.5 nan 0.2\n"        # 7 w not a number (Darknet's %f would take it)
        "\n"                         # 8 blank: ignored
        "80 0.5 0.5 0.2 0.2\n"       # 9 class >= num_classes
        "-1 0.5 0.5 0.2 0.2\n"       # 10 negative class
        "3 0.5 0.5 0 0.2\n"          # 11 w = 0: kept, reported
        "3 1.5 0.5 0.2 1.2\n"        # 12 cx > 1 and h > 1: kept, reported
        "# comment\n"                # 13 not a label line
        "4 .25 +0.75 2e-1 0.1\n"     # 14 good (C number syntax)
    )
    result = read_labels(path, num_classes=80)
    messages = [str(issue) for issue in result.issues]
    where = str(path)
    assert messages == [
        f"{where}:2: 4 fields, expected 5 (class cx cy w h); line skipped",
        f"{where}:3: 6 fields, expected 5 (class cx cy w h); line skipped",
        f"{where}:4: class '1.0' is not an integer; line skipped",
        f"{where}:5: class 'cat' is not a number; line skipped",
        f"{where}:6: cy 'abc' is not a number; line skipped",
        f"{where}:7: w 'nan' is not a number; line skipped",
        f"{where}:9: class 80 must be in [0, 79]; line skipped",
        f"{where}:10: class -1 must be in [0, 79]; line skipped",
        f"{where}:11: w = 0 is not > 0; kept, as Darknet's read_boxes keeps it",
        f"{where}:12: h = 1.2 is > 1, cx = 1.5 is outside [0, 1]; "
        "kept, as Darknet's read_boxes keeps it",
        f"{where}:13: 2 fields, expected 5 (class cx cy w h); line skipped",
    ]
    assert [issue.skipped for issue in result.issues] == [True] * 8 + [False] * 2 + [True]
    assert result.lines.tolist() == [1, 11, 12, 14]
    np.testing.assert_array_equal(result.boxes, np.array([
        [0, 0.5, 0.5, 0.2, 0.2],
        [3, 0.5, 0.5, 0, 0.2],
        [3, 1.5, 0.5, 0.2, 1.2],
        [4, 0.25, 0.75, 0.2, 0.1],
    ], np.float32))
    assert not result.missing


def test_values_overflowing_float32_are_skipped_not_kept_as_inf(tmp_path, recwarn):
    # "1e39"/"1e999" are number syntax, but float32 inf (as the literal "inf", skipped above):
    # an infinite ground-truth box used to be kept (and numpy warned "overflow in cast")
    path = tmp_path / "a.txt"
    path.write_text("0 0.5 0.5 0.2 0.2\n1 0.5 0.5 1e39 0.2\n2 -1e999 0.5 0.2 1e40\n"
                    "3 0.5 0.5 3e38 0.2\n")
    result = read_labels(path, num_classes=80)
    assert [str(issue) for issue in result.issues] == [
        f"{path}:2: w = 1e+39 is not a finite 32-bit float; line skipped",
        f"{path}:3: cx = -inf, h = 1e+40 is not a finite 32-bit float; line skipped",
        f"{path}:4: w = 3e+38 is > 1; kept, as Darknet's read_boxes keeps it",
    ]
    assert result.lines.tolist() == [1, 4]
    assert np.isfinite(result.boxes).all()
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_without_num_classes_only_negative_classes_are_skipped(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("85 0.5 0.5 0.2 0.2\n-2 0.5 0.5 0.2 0.2\n")
    result = read_labels(path)
    assert result.class_ids.tolist() == [85]
    assert [str(issue) for issue in result.issues] == [
        f"{path}:2: class -2 must be >= 0; line skipped"]


def test_crlf_tabs_blank_lines_and_no_final_newline(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes(b"\r\n1\t0.5  0.5 0.25 0.25\r\n\r\n  2 0.1 0.2 0.3 0.4")
    result = read_labels(path, num_classes=3)
    assert result.issues == ()
    assert result.lines.tolist() == [2, 4]
    np.testing.assert_array_equal(
        result.boxes, np.array([[1, 0.5, 0.5, 0.25, 0.25], [2, 0.1, 0.2, 0.3, 0.4]], np.float32))


def test_a_byte_order_mark_is_dropped_not_the_first_row(tmp_path):
    # Notepad's "UTF-8 with BOM": the first row was skipped as "class '\ufeff0' is not a number"
    path = tmp_path / "a.txt"
    path.write_bytes(b"\xef\xbb\xbf0 0.5 0.5 0.2 0.2\r\n1 0.5 0.5 0.2 0.2\r\n")
    result = read_labels(path, num_classes=3)
    assert result.issues == ()
    assert result.class_ids.tolist() == [0, 1] and result.lines.tolist() == [1, 2]


def test_empty_file_has_no_rows_and_no_issues(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_text("")
    result = read_labels(path)
    assert result.boxes.shape == (0, 5) and result.issues == () and not result.missing


def test_unreadable_label_path_raises_naming_it(tmp_path):
    with pytest.raises(DataError, match="cannot read label file") as info:
        read_labels(tmp_path)  # a directory
    assert str(tmp_path) in str(info.value)
