"""``export`` on the command line: the graph is checked in memory before anything is written, binary output to ``-``
keeps standard output clean, and ``--dynamic-size`` is checked at a size the network really takes."""
from __future__ import annotations

import argparse
import os

import pytest

from darknet_torch import Darknet
from darknet_torch.cli import export as export_cli
from darknet_torch.cli.main import main
from tests.golden import GOLDEN, load_run

pytest.importorskip("onnxruntime", reason="the onnx extra is not installed (pip install -e '.[onnx]')")


def _argv(name: str, output: str, *options: str) -> list[str]:
    run = load_run(GOLDEN / "mini" / name)
    return ["export", "--cfg", str(run.cfg), "--weights", str(run.weights), "--output", output, *options]


def test_failed_verification_writes_nothing(golden_dir, tmp_path, monkeypatch, caplog):
    out = tmp_path / "m.onnx"
    out.write_bytes(b"previous")
    monkeypatch.setattr(export_cli, "compare_with_torch", lambda session, model, shapes: [0.5] * len(shapes))
    assert main(_argv("yolov3-tiny", str(out))) == 1
    assert "error: ONNX output differs from PyTorch by more than 0.0001; nothing written" in caplog.text
    assert out.read_bytes() == b"previous"


def test_binary_output_to_standard_output(golden_dir, capfdbinary):
    assert main(_argv("yolov3-tiny", "-")) == 0
    captured = capfdbinary.readouterr()
    assert captured.out.startswith(b"\x08")  # the ONNX protobuf (ir_version field), nothing else
    assert b"exported - (opset 13" in captured.err and b"exported" not in captured.out


def test_device_output_is_verified_in_memory(golden_dir, capsys):
    assert main(_argv("yolov3-tiny", os.devnull)) == 0
    captured = capsys.readouterr()
    assert f"exported {os.devnull}" in captured.out and "Traceback" not in captured.err


def test_dynamic_size_is_checked_at_the_networks_size_step(golden_dir):
    model = Darknet(load_run(GOLDEN / "mini" / "yolov4-sam-mish-csp-reorg-bfm").cfg)
    args = argparse.Namespace(batch_size=1, dynamic_batch=False, dynamic_size=True)
    assert export_cli._check_shapes(model, (128, 128), args) == [(1, 3, 128, 128), (1, 3, 192, 256)]
