"""DarknetDataset: a .data file's lists, names and label scans read once, and the commands' requirements named."""
from __future__ import annotations

from pathlib import Path

import pytest

from darknet_torch.data.dataset import DarknetDataset
from darknet_torch.errors import CfgError, DataError
from tests.data.test_report import make_dataset


def write_set(root: Path, data: str) -> Path:
    images = make_dataset(root, {"a": "0 0.5 0.5 0.2 0.2\n5 0.5 0.5 0.1 0.1\n", "b": None})
    (root / "train.txt").write_text("".join(f"{image}\n" for image in images))
    (root / "names.txt").write_text("thing\nother\n")
    path = root / "set.data"
    path.write_text(data)
    return path


def test_lists_names_and_scans_are_read_once(tmp_path):
    dataset = DarknetDataset.from_data_file(write_set(tmp_path, "classes = 2\ntrain = train.txt\nnames = names.txt\n"))
    report = dataset.training_report(2)
    assert [p.name for p in report.image_paths] == ["a.jpg", "b.jpg"] and report.names == ("thing", "other")
    assert len(report.boxes) == 1 and [i.line for i in report.issues] == [2]  # class 5 skipped, reported
    (tmp_path / "train.txt").write_text("")
    (tmp_path / "names.txt").unlink()
    assert dataset.training_report(2) is report  # nothing is read again
    assert dataset.scan(dataset.validation_list(), 2) is report  # valid defaults to the training list
    assert dataset.names() == ["thing", "other"]
    every_class = dataset.scan(dataset.train_list(), None)  # calc_anchors keeps every class
    assert len(every_class.boxes) == 2 and len(every_class.class_counts) == 6


def test_commands_name_the_key_they_need_and_classes_must_match(tmp_path):
    dataset = DarknetDataset.from_data_file(write_set(tmp_path, "classes = 3\ntrain = train.txt\n"))
    with pytest.raises(CfgError, match=r"set.data: no 'valid =' entry: detector map needs the validation list"):
        dataset.require("valid", "detector map needs the validation list")
    with pytest.raises(CfgError, match=r"no 'names =' entry: --map needs the class names"):
        dataset.names("--map needs the class names")
    with pytest.raises(CfgError, match="set.data: classes=3, but the cfg's last detection layer has classes=2"):
        dataset.check_classes(2)
    dataset.check_classes(3)


def test_keys_the_caller_reads_are_not_reported_unused(tmp_path):
    path = write_set(tmp_path, "train = train.txt\nsaveweights = 500\nbogus = 1\n")
    assert len(DarknetDataset.from_data_file(path).warnings) == 2
    (warning,) = DarknetDataset.from_data_file(path, used_keys=("saveweights",)).warnings
    assert "key 'bogus' is not used" in warning
    dataset = DarknetDataset.from_data_file(path)
    assert DarknetDataset.of(dataset) is dataset and DarknetDataset.of(path).config == dataset.config


def test_a_train_list_name_too_long_is_not_found_not_a_traceback(tmp_path):
    # Path.is_file() raises ENAMETOOLONG (only "not found" is False): train ended in an OSError traceback
    dataset = DarknetDataset.from_data_file(write_set(tmp_path, f"classes = 2\ntrain = {'t' * 5000}\n"))
    with pytest.raises(DataError, match="image list not found"):
        dataset.train_list()
