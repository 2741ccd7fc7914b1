"""``partial`` on the command line: ``--output -`` puts the weights, and nothing else, on standard output."""
from __future__ import annotations

from darknet_torch.cli.main import main
from tests.golden import GOLDEN, load_run


def test_weights_to_standard_output_and_the_status_line_to_stderr(golden_dir, tmp_path, capfdbinary):
    run = load_run(GOLDEN / "mini" / "yolov3-tiny")
    argv = ["partial", "--cfg", str(run.cfg), "--weights", str(run.weights), "--layers", "5", "--output"]
    assert main([*argv, str(tmp_path / "x.conv.5")]) == 0
    capfdbinary.readouterr()
    assert main([*argv, "-"]) == 0
    captured = capfdbinary.readouterr()
    assert captured.out == (tmp_path / "x.conv.5").read_bytes()
    assert captured.err.startswith(b"wrote -: layers 0..4")
