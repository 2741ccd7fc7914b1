"""The .data file, the .names file and image list files."""
from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from darknet_torch.config.data_files import read_data_file, read_image_list, read_names
from darknet_torch.errors import CfgError, DataError


def test_coco128_data_file(coco128_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # entries are found beside the .data file, from any cwd
    config = read_data_file(coco128_dir / "coco128.data")
    assert config.classes == 80
    assert config.train == coco128_dir.absolute() / "train.txt"
    assert config.valid == coco128_dir.absolute() / "train.txt"
    assert config.names == coco128_dir.absolute() / "coco.names"
    assert config.backup == tmp_path / "backup"  # exists nowhere: Darknet's cwd reading
    assert config.eval is None
    assert config.extra == {} and config.warnings == ()


def test_coco128_names_without_final_newline(coco128_dir):
    assert not (coco128_dir / "coco.names").read_bytes().endswith(b"\n")
    names = read_names(coco128_dir / "coco.names")
    assert len(names) == 80
    assert names[0] == "person" and names[-1] == "toothbrush"
    assert "traffic light" in names


def test_coco128_train_list(coco128_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    images = read_image_list(coco128_dir / "train.txt")
    assert len(images) == 128
    assert images[0] == coco128_dir.absolute() / "images/train2017/000000000009.jpg"
    assert all(image.is_absolute() and image.is_file() for image in images)


def test_data_file_syntax_comments_unknown_keys_and_types(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "names.txt").write_text("a\nb\n")
    data = tmp_path / "my.data"
    data.write_text(
        "# a comment\n"
        "; another comment\n"
        "\n"
        "classes = 2\r\n"
        "  names=names.txt  \n"
        "eval = coco\n"
        "difficult = data/difficult.txt\n"
        "valid = /abs/valid.txt\n"
    )
    config = read_data_file(data)
    assert config.classes == 2
    assert config.names == tmp_path / "names.txt"
    assert config.valid == Path("/abs/valid.txt")
    assert config.eval == "coco"
    assert config.train is None and config.backup is None
    assert config.extra == {"difficult": "data/difficult.txt"}
    assert config.warnings == (
        f"{data}:7: key 'difficult' is not used by darknet_torch (kept in DataConfig.extra)",)


def test_relative_entries_prefer_the_working_directory(tmp_path, monkeypatch):
    data_dir, work_dir = tmp_path / "data", tmp_path / "work"
    for folder in (data_dir, work_dir):
        folder.mkdir()
        (folder / "x.names").write_text("a\n")
    (data_dir / "only_here.txt").write_text("")
    (data_dir / "d.data").write_text("names = x.names\ntrain = only_here.txt\n")
    monkeypatch.chdir(work_dir)
    config = read_data_file(data_dir / "d.data")
    assert config.names == work_dir / "x.names"        # cwd first, as Darknet
    assert config.train == data_dir / "only_here.txt"  # then the .data file's folder


@pytest.mark.parametrize(("line", "message"), [
    ("classes 80", r":2: expected 'key = value', got 'classes 80'"),
    ("= 80", r":2: missing key before '='"),
    ("names =", r":2: key 'names' has no value"),
    ("classes = 80", r":2: duplicate key 'classes' \(first set on line 1\)"),
    ("train = my list.txt", r":2: whitespace inside 'train = my list.txt'.*'train=mylist.txt'"),
])
def test_malformed_data_file_lines_raise_with_path_and_line(tmp_path, line, message):
    data = tmp_path / "bad.data"
    data.write_text(f"classes = 80\n{line}\n")
    with pytest.raises(CfgError, match=message) as info:
        read_data_file(data)
    assert str(info.value).startswith(f"{data}:2: ")


@pytest.mark.parametrize("value", ["0", "-3", "eighty", "80.0", "8_0", "\u0663"])  # \u0663: int() reads 3, atoi 0
def test_classes_must_be_a_positive_integer(tmp_path, value):
    data = tmp_path / "bad.data"
    data.write_text(f"names = x\nclasses = {value}\n")
    expected = rf"^{re.escape(str(data))}:2: classes must be a positive integer"
    with pytest.raises(CfgError, match=expected):
        read_data_file(data)


def test_missing_data_file_raises_naming_it(tmp_path):
    with pytest.raises(CfgError, match="cannot read .data file") as info:
        read_data_file(tmp_path / "none.data")
    assert str(tmp_path / "none.data") in str(info.value)


@pytest.mark.parametrize(("content", "names"), [
    (b"a\nb", ["a", "b"]),
    (b"a\nb\n", ["a", "b"]),
    (b"a\r\nb\r\n", ["a", "b"]),
    (b"a\n\nb\n", ["a", "", "b"]),      # Darknet counts a blank line as a name
    (b" x y \n", [" x y "]),
])
def test_read_names_keeps_every_line(tmp_path, content, names):
    path = tmp_path / "n.names"
    path.write_bytes(content)
    assert read_names(path) == names


def test_names_that_are_not_utf8_are_read_as_latin1_with_a_warning(tmp_path, caplog):
    path = tmp_path / "n.names"
    path.write_bytes("café\nStraße\n".encode("latin-1") + "naïve\nplain\n".encode("utf-8"))
    with caplog.at_level(logging.WARNING, logger="darknet_torch.config.data_files"):
        assert read_names(path) == ["café", "Straße", "naïve", "plain"]
    assert caplog.messages == [f"{path}: lines 1, 2 not UTF-8; read as Latin-1"]
    caplog.clear()
    path.write_bytes("naïve\nplain\n".encode("utf-8-sig"))
    assert read_names(path) == ["naïve", "plain"] and not caplog.messages


def test_empty_or_missing_names_file_is_an_error(tmp_path):
    empty = tmp_path / "empty.names"
    empty.write_text("")
    with pytest.raises(CfgError, match=f"^{re.escape(str(empty))}: names file is empty"):
        read_names(empty)
    with pytest.raises(CfgError, match="cannot read names file"):
        read_names(tmp_path / "missing.names")


def test_image_list_skips_blanks_and_comments_and_resolves_relative_entries(
        tmp_path, monkeypatch):
    lists, work = tmp_path / "lists", tmp_path / "work"
    (lists / "img").mkdir(parents=True)
    work.mkdir()
    for name in ("a.jpg", "b.jpg"):
        (lists / "img" / name).write_bytes(b"")
    (work / "c.jpg").write_bytes(b"")
    listing = lists / "train.txt"
    listing.write_text(f"# images\nimg/a.jpg\r\n\n  img/b.jpg  \nc.jpg\n{lists / 'img/a.jpg'}")
    monkeypatch.chdir(work)
    assert read_image_list(listing) == [
        lists / "img/a.jpg", lists / "img/b.jpg", work / "c.jpg", lists / "img/a.jpg"]


def test_missing_images_are_listed_with_their_lines(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ok.jpg").write_bytes(b"")
    listing = tmp_path / "list.txt"
    listing.write_text("ok.jpg\nmissing1.jpg\n\nok.jpg\nsub/missing2.png\n")
    with pytest.raises(DataError) as info:
        read_image_list(listing)
    message = str(info.value)
    assert message.startswith(f"2 image(s) of {listing} not found")
    assert f"{listing}:2: image not found: 'missing1.jpg'" in message
    assert f"{listing}:5: image not found: 'sub/missing2.png'" in message


def test_empty_or_missing_image_list_is_an_error(tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text("# nothing\n\n")
    with pytest.raises(DataError, match=f"^{re.escape(str(listing))}: image list is empty"):
        read_image_list(listing)
    with pytest.raises(DataError, match="cannot read image list"):
        read_image_list(tmp_path / "missing.txt")
