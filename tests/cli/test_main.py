"""``darknet_torch`` entry point: errors become exit code 2, and only batch commands change glibc's allocator."""
from __future__ import annotations

import importlib
import sys

import pytest

from darknet_torch.cli import main as cli_main


@pytest.mark.parametrize("argv, keeps", [
    (["map", "--data", "missing.data", "--cfg", "x.cfg", "--weights", "w"], True),
    (["summary", "--cfg", "missing.cfg"], False),
])
def test_batch_commands_keep_freed_memory(monkeypatch, capsys, argv, keeps):
    calls = []
    monkeypatch.setattr(cli_main, "keep_freed_memory", lambda: calls.append(True) or True)
    assert cli_main.main(argv) == 2  # the missing file is reported, not raised
    assert "error:" in capsys.readouterr().err
    assert bool(calls) == keeps


def test_the_server_is_not_a_batch_command():
    assert "serve" in cli_main.COMMANDS and "serve" not in cli_main.KEEP_FREED_MEMORY
    assert set(cli_main.KEEP_FREED_MEMORY) == {"detect", "map", "train"}


# the shortest command line each command's parser accepts
ARGV = {
    "summary": ["--cfg", "x.cfg"], "custom-cfg": ["--cfg", "x.cfg", "--output", "y.cfg"], "detect": [],
    "classify": ["x.jpg", "--cfg", "x.cfg"], "demo": ["x.mp4"], "map": [], "export": ["--cfg", "x", "--weights", "y"],
    "calc_anchors": ["--data", "x", "--width", "32", "--height", "32"], "train": [],
    "partial": ["--cfg", "x", "--weights", "y", "--output", "z", "--layers", "1"],
    "prune": ["--cfg", "x", "--weights", "y", "--ratio", "0.5", "--output", "z"], "serve": [],
    "detector": ["test"], "classifier": ["predict"],
}


def _raising(exc: BaseException):
    def run(args):
        raise exc
    return run


@pytest.mark.parametrize("command", sorted(cli_main.COMMANDS))
def test_every_command_turns_errors_and_ctrl_c_into_one_line(command, monkeypatch, capsys):
    from darknet_torch.errors import CfgError

    assert set(ARGV) == set(cli_main.COMMANDS)
    module = importlib.import_module(cli_main.COMMANDS[command])
    monkeypatch.setattr(cli_main, "keep_freed_memory", lambda: True)
    monkeypatch.setattr(module, "run", _raising(CfgError("x.cfg:3 [net] width: bad")))
    assert cli_main.main([command, *ARGV[command]]) == 2
    assert capsys.readouterr().err == "error: x.cfg:3 [net] width: bad\n"
    monkeypatch.setattr(module, "run", _raising(KeyboardInterrupt()))
    assert cli_main.main([command, *ARGV[command]]) == 130
    assert capsys.readouterr().err == "interrupted\n"


def test_ctrl_c_while_the_parser_is_built_is_exit_130(monkeypatch, capsys):
    def interrupted():
        raise KeyboardInterrupt  # importing the command modules takes about 0.5 s
    monkeypatch.setattr(cli_main, "build_parser", interrupted)
    assert cli_main.main(["summary", "--cfg", "x.cfg"]) == 130
    assert capsys.readouterr().err == "interrupted\n"


@pytest.mark.parametrize("argv", [["detect", "--device", "bogus"], ["map", "a.data", "b.cfg", "--device", "-1"],
                                  ["train", "a.data", "b.cfg", "--device", "gpu"]])
def test_a_bad_device_is_one_line(argv, capsys, monkeypatch):
    monkeypatch.setattr(cli_main, "keep_freed_memory", lambda: True)
    assert cli_main.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: device '") and "is not a device name" in err and "Traceback" not in err


def test_a_file_name_that_is_not_utf8_prints_as_its_bytes(monkeypatch):
    # detect --print on caf\xe9.jpg under a UTF-8 locale (strict stdout) raised UnicodeEncodeError mid-run
    import io
    import os

    from darknet_torch.cli.main import _keep_undecodable_names
    raw = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(raw, encoding="utf-8", errors="strict"))
    _keep_undecodable_names()
    print(os.fsdecode(b"caf\xe9.jpg: Predicted"), "caf\u00e9")
    sys.stdout.flush()
    assert raw.getvalue() == b"caf\xe9.jpg: Predicted caf\xc3\xa9\n"
