"""Commands writing named output files refuse an output they cannot write before any work: exit 2 with one
``error:`` line naming the path, never a traceback. The input files named here do not exist, so an output error is
only seen if it is checked first."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from darknet_torch.cli.main import main
from tests.cli.test_bad_input import refuse_new_files

MISSING = ["--cfg", "missing.cfg", "--weights", "missing.weights"]

# id, command line before the output path, option naming the output (the path is appended to it)
COMMANDS = [
    ("custom-cfg", ["custom-cfg", "--cfg", "missing.cfg", "--classes", "3"], "--output"),
    ("partial", ["partial", *MISSING, "--layers", "5"], "--output"),
    ("prune", ["prune", *MISSING, "--ratio", "0.5"], "--output"),
    ("export", ["export", *MISSING], "--output"),
    ("calc_anchors_output", ["calc_anchors", "--data", "missing.data", "--width", "32", "--height", "32"], "--output"),
    ("calc_anchors_show", ["calc_anchors", "--data", "missing.data", "--width", "32", "--height", "32"], "--show"),
]


@pytest.fixture()
def read_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "read-only"
    folder.mkdir()
    refuse_new_files(folder, monkeypatch)
    return folder


def _output(case: str, tmp_path: Path, read_only: Path) -> tuple[str, str]:
    """(output path, expected message) of each case."""
    if case == "folder":
        return str(tmp_path), f"error: {tmp_path}: the output file is a folder"
    if case == "under_a_file":
        (tmp_path / "a_file").write_text("")
        return str(tmp_path / "a_file" / "out"), f"error: {tmp_path / 'a_file'}: output path exists and is not a folder"
    return str(read_only / "out"), f"error: {read_only}: cannot write to the output folder (Permission denied)"


@pytest.mark.parametrize("case", ["folder", "under_a_file", "read_only_folder"])
@pytest.mark.parametrize("argv, option", [c[1:] for c in COMMANDS], ids=[c[0] for c in COMMANDS])
def test_unwritable_output_is_refused_first(argv, option, case, tmp_path, read_only, capsys):
    path, message = _output(case, tmp_path, read_only)
    if case == "folder" and argv[0] == "prune":  # prune's --output is a prefix: OUTPUT.cfg and OUTPUT.weights
        (tmp_path / "out.cfg").mkdir()
        path, message = str(tmp_path / "out"), f"error: {tmp_path / 'out.cfg'}: the output file is a folder"
    assert main([*argv, option, path]) == 2
    out, err = capsys.readouterr()
    assert err == message + "\n" and not out
    assert not list(read_only.iterdir())


def test_output_to_a_device_or_a_new_folder_is_fine(tmp_path, golden_dir, capsys):
    cfg = golden_dir / "mini" / "yolov3-tiny" / "yolov3-tiny.cfg"
    assert main(["custom-cfg", "--cfg", str(cfg), "--classes", "3", "--output", os.devnull]) == 0
    assert main(["custom-cfg", "--cfg", str(cfg), "--classes", "3", "--output", str(tmp_path / "new" / "x.cfg")]) == 0
    assert "classes=3" in (tmp_path / "new" / "x.cfg").read_text()


# ---- outputs that are the command's own inputs: refused before any work, the input kept -------------------------

SOURCES = ["--cfg", "in.cfg", "--weights", "in.weights"]
ANCHORS = ["calc_anchors", "--data", "in.data", "--width", "32", "--height", "32"]
OVERWRITING = [
    # id, command line, the output (or prefix) given, the source it would overwrite
    ("export", ["export", *SOURCES, "--output"], "in.weights", "in.weights"),
    ("export_cfg", ["export", *SOURCES, "-o"], "in.cfg", "in.cfg"),
    ("prune", ["prune", *SOURCES, "--ratio", "0.3", "--output"], "in", "in.cfg"),
    ("partial", ["partial", *SOURCES, "--layers", "5", "--output"], "in.weights", "in.weights"),
    ("custom-cfg", ["custom-cfg", "--cfg", "in.cfg", "--classes", "3", "--output"], "in.cfg", "in.cfg"),
    ("custom-cfg_names", ["custom-cfg", "--cfg", "in.cfg", "--names", "in.names", "--output"], "in.names", "in.names"),
    ("calc_anchors_output", [*ANCHORS, "--output"], "in.data", "in.data"),
    ("calc_anchors_show", [*ANCHORS, "--show"], "in.data", "in.data"),
]


@pytest.mark.parametrize("argv, output, source", [c[1:] for c in OVERWRITING], ids=[c[0] for c in OVERWRITING])
def test_output_that_is_an_input_is_refused_first(argv, output, source, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for name in ("in.cfg", "in.weights", "in.names", "in.data"):  # not valid inputs: the check comes before reading
        Path(name).write_bytes(b"keep me")
    assert main([*argv, output]) == 2
    clash = output if output == source else source
    assert capsys.readouterr().err == (f"error: {clash}: this output would overwrite the source {source}; "
                                       "choose another output\n")
    assert all(Path(name).read_bytes() == b"keep me" for name in ("in.cfg", "in.weights", "in.names", "in.data"))


# ---- output folders: detect and demo check theirs before reading the source or loading the model ----------------

FOLDER_COMMANDS = [
    # id, command line, its output folder option, the folder it writes in below OUTPUT
    ("detect", ["detect", "x.jpg", *MISSING], "--output", ""),
    ("demo_output", ["demo", "missing.mp4", *MISSING], "--output", ""),
    ("demo_labels", ["demo", "missing.mp4", *MISSING, "--no-save-video", "--no-json", "--save-labels"], "--output",
     "labels"),
]


@pytest.mark.parametrize("case", ["under_a_file", "read_only_folder"])
@pytest.mark.parametrize("argv, option, below", [c[1:] for c in FOLDER_COMMANDS], ids=[c[0] for c in FOLDER_COMMANDS])
def test_unwritable_output_folder_is_refused_first(argv, option, below, case, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.jpg").write_bytes(b"")
    if case == "under_a_file":
        (tmp_path / "a_file").write_text("")
        output = tmp_path / "a_file" / "out"
        message = f"{output / below}: cannot write to the output folder (Not a directory)"
    else:
        output = tmp_path / "out"
        (output / below).mkdir(parents=True)
        refuse_new_files(output / below, monkeypatch)
        message = f"{output / below}: cannot write to the output folder (Permission denied)"
    assert main([*argv, option, str(output)]) == 2
    out, err = capsys.readouterr()
    assert err == f"error: {message}\n" and not out


@pytest.mark.parametrize("option", ["-out_filename", "--json"])
def test_demo_output_file_under_a_file_is_refused_first(option, tmp_path, capsys):
    (tmp_path / "a_file").write_text("")
    assert main(["demo", "missing.mp4", *MISSING, option, str(tmp_path / "a_file" / "out")]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'a_file'}: output path exists and is not a folder\n"
