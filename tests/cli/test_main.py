"""``darknet_torch`` entry point: errors become exit code 2, and only batch commands change glibc's allocator."""
from __future__ import annotations

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
