"""Expanding detection sources: files, folders, .txt lists and globs, with errors that name the path."""
from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import pytest

from darknet_torch.detect.sources import expand_sources, read_path_lines
from darknet_torch.errors import DataError


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    """a.jpg, B.PNG, notes.md, sub/c.jpg, sub/deeper/d.bmp, empty/"""
    for rel in ("a.jpg", "B.PNG", "notes.md", "sub/c.jpg", "sub/deeper/d.bmp"):
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    (tmp_path / "empty").mkdir()
    return tmp_path


def names(paths: list[Path], root: Path) -> list[str]:
    return [p.relative_to(root).as_posix() for p in paths]


def test_single_file_is_taken_as_is_even_without_an_image_extension(tree: Path):
    assert expand_sources([tree / "a.jpg"]) == [tree / "a.jpg"]
    assert expand_sources([str(tree / "notes.md")]) == [tree / "notes.md"]  # reported later, when decoded


def test_folder_gives_its_images_sorted_case_insensitive_extensions(tree: Path):
    assert names(expand_sources([tree]), tree) == ["B.PNG", "a.jpg"]


def test_recursive_folder_includes_sub_folders(tree: Path):
    assert names(expand_sources([tree], recursive=True), tree) == ["B.PNG", "a.jpg", "sub/c.jpg",
                                                                    "sub/deeper/d.bmp"]


def test_folder_with_images_only_below_suggests_recursive(tree: Path):
    (tree / "sub" / "c.jpg").unlink()
    with pytest.raises(DataError, match=r"sub-folders \(add --recursive\)") as err:
        expand_sources([tree / "sub"])
    assert str(tree / "sub") in str(err.value)
    assert names(expand_sources([tree / "sub"], recursive=True), tree) == ["sub/deeper/d.bmp"]


def test_empty_folder_is_an_error_naming_it(tree: Path):
    with pytest.raises(DataError, match="folder has no images") as err:
        expand_sources([tree / "empty"], recursive=True)
    assert str(tree / "empty") in str(err.value)


def test_missing_source_is_an_error_naming_it(tree: Path):
    with pytest.raises(DataError, match="no such file or folder") as err:
        expand_sources([tree / "a.jpg", tree / "missing.jpg"])
    assert str(tree / "missing.jpg") in str(err.value)
    with pytest.raises(DataError, match="no source"):
        expand_sources([])


def test_txt_list_in_darknet_format(tree: Path):
    listing = tree / "list.txt"
    listing.write_text(f"{tree / 'sub' / 'c.jpg'}\r\na.jpg\n\n")  # absolute + relative to the list, CRLF
    assert names(expand_sources([listing]), tree) == ["sub/c.jpg", "a.jpg"]
    listing.write_text("a.jpg\ngone.jpg\n")
    with pytest.raises(DataError, match="gone.jpg"):
        expand_sources([listing])


def test_names_too_long_are_one_line_errors_not_tracebacks(tree: Path):
    # Path.exists()/is_dir() raise ENAMETOOLONG (only "not found" is False): a long argument, or a binary file
    # given as a .txt list, ended detect with an OSError traceback
    with pytest.raises(DataError, match=r"^'aaaa.*\.\.\. \(5000 characters\): File name too long$"):
        expand_sources(["a" * 5000])
    with pytest.raises(DataError, match="embedded null byte"):
        expand_sources(["a\0b.jpg"])
    listing = tree / "photo.txt"
    listing.write_bytes(b"b" * 5000 + b"\n")
    with pytest.raises(DataError, match=rf"{listing}:1: image not found: 'bbbb.*\.\.\. \(5000 characters\)$"):
        expand_sources([listing])


def test_glob_patterns_match_images_only(tree: Path):
    assert names(expand_sources([str(tree / "*")]), tree) == ["B.PNG", "a.jpg"]
    assert names(expand_sources([str(tree / "**" / "*.jpg")]), tree) == ["a.jpg", "sub/c.jpg"]
    with pytest.raises(DataError, match="nothing matches"):
        expand_sources([str(tree / "*.gif")])
    with pytest.raises(DataError, match="none an image file"):
        expand_sources([str(tree / "*.md")])


def test_several_sources_keep_their_order(tree: Path):
    got = expand_sources([tree / "sub" / "c.jpg", tree, str(tree / "sub" / "deeper" / "*.bmp")])
    assert names(got, tree) == ["sub/c.jpg", "B.PNG", "a.jpg", "sub/deeper/d.bmp"]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_dash_reads_image_paths_from_standard_input(tree: Path, monkeypatch):
    # Darknet's `detector test ... < list.txt`: every line, in order, taken as is (a bad path fails at decoding)
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{tree / 'B.PNG'}\n\n# comment\n  {tree / 'missing.jpg'}  \n"))
    assert expand_sources(["-"]) == [tree / "B.PNG", tree / "missing.jpg"]


def test_stdin_list_saved_with_a_byte_order_mark_reads_as_without(monkeypatch):
    # `detect - < list.txt` with a BOM: the first path was '\ufeffa.jpg', "image file not found"
    monkeypatch.setattr(sys, "stdin", io.StringIO("\ufeffa.jpg\r\n\ufeffb.jpg\r\n"))
    assert expand_sources(["-"]) == [Path("a.jpg"), Path("\ufeffb.jpg")]  # only the stream's start is a BOM


def test_file_names_that_are_not_utf8_are_kept_from_lists_and_stdin(tmp_path: Path, monkeypatch):
    # caf\xe9.jpg (Latin-1): a .txt list said "image not found: 'caf\ufffd.jpg'"; stdin under a UTF-8 locale
    # raised UnicodeDecodeError. Darknet fopen()s the bytes.
    image = Path(os.fsdecode(bytes(tmp_path) + b"/caf\xe9.jpg"))
    image.write_bytes(b"x")
    listing = tmp_path / "list.txt"
    listing.write_bytes(os.fsencode(image) + b"\n")
    assert expand_sources([listing]) == [image]
    strict_stdin = io.TextIOWrapper(io.BytesIO(os.fsencode(image) + b"\n"), encoding="utf-8", errors="strict")
    monkeypatch.setattr(sys, "stdin", strict_stdin)
    assert expand_sources(["-"]) == [image]
    assert not strict_stdin.buffer.closed


def test_stdin_prompts_like_darknet_only_on_a_terminal(capsys):
    assert read_path_lines(_Terminal("a.jpg\nb.jpg\n")) == [Path("a.jpg"), Path("b.jpg")]
    assert capsys.readouterr().out == "Enter Image Path: " * 3
    with pytest.raises(DataError, match="no image paths on standard input"):
        read_path_lines(io.StringIO("\n"))
