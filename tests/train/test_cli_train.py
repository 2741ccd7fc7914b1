"""``darknet_torch train`` / ``python train.py``: both argument orders, start iterations, and bad input."""
from __future__ import annotations

import csv
import os
import subprocess
import sys

import pytest
import torch

from darknet_torch.cli.main import build_parser, main
from darknet_torch.cli.train import options_from_args
from darknet_torch.model.darknet import Darknet
from darknet_torch.train.checkpoint import load_state
from darknet_torch.train.run import build_trainer


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def options(*argv: str):
    return options_from_args(build_parser().parse_args(["train", *argv]))


def test_darknet_order_and_flags_agree():
    flags = options("--data", "obj.data", "--cfg", "x.cfg", "--weights", "w.conv.15", "-map", "-clear", "-dont_show")
    positional = options("obj.data", "x.cfg", "w.conv.15", "--map", "--clear", "--dont-show")
    assert flags == positional
    assert (str(flags.data), str(flags.cfg), str(flags.weights)) == ("obj.data", "x.cfg", "w.conv.15")
    assert flags.calc_map and flags.clear and flags.resume is False
    assert options("obj.data", "x.cfg", "--resume").resume is True
    assert str(options("obj.data", "x.cfg", "--resume", "b/x_last.pt").resume) == "b/x_last.pt"


def test_cpu_defaults_and_their_flags(synthetic_data, cfg_factory, monkeypatch):
    """On the CPU: in-process loading, channels-last, float32; each can be overridden (``--amp`` as on a CPU with
    native bfloat16; without it ``--amp`` trains in float32: tests/train/test_run.py)."""
    monkeypatch.setattr("darknet_torch.train.run.native_bfloat16", lambda device: True)
    cfg = cfg_factory(net={"max_batches": 3})
    defaults = options(str(synthetic_data), str(cfg), "--device", "cpu", "--quiet")
    assert (defaults.workers, defaults.channels_last, defaults.amp) == (None, None, None)
    trainer = build_trainer(defaults)
    loader = trainer.batches(0)
    assert loader.num_workers == 0
    assert trainer.memory_format == torch.channels_last and not trainer.options.amp
    flipped = options(str(synthetic_data), str(cfg), "--device", "cpu", "--workers", "1", "--no-channels-last", "--amp")
    trainer = build_trainer(flipped)
    assert trainer.batches(0).num_workers == 1
    assert trainer.memory_format == torch.contiguous_format and trainer.options.amp
    assert trainer.autocast_dtype == torch.bfloat16 and not trainer.scaler.is_enabled()


@pytest.mark.parametrize("argv, message", [
    (["obj.data"], "needs a .data file and a .cfg"),
    (["a.data", "x.cfg", "--data", "b.data"], "data given twice"),
    (["a.data", "x.cfg", "w", "extra"], "at most DATA CFG WEIGHTS"),
])
def test_argument_errors(argv, message, capsys):
    assert main(["train", *argv]) == 2
    assert message in capsys.readouterr().err


def test_train_end_to_end(synthetic_data, cfg_factory, capsys):
    cfg = cfg_factory(net={"max_batches": 3})
    assert main(["train", str(synthetic_data), str(cfg), "--workers", "0", "--quiet", "-show_imgs", "--no-tensorboard"]) == 0
    assert "trained to iteration 3" in capsys.readouterr().out
    backup = synthetic_data.parent / "backup"
    assert sorted(p.name for p in backup.iterdir()) == ["batches_tiny", "chart_tiny.png", "results_tiny.csv",
                                                        "tiny_final.weights", "tiny_last.pt"]
    assert sorted(p.name for p in (backup / "batches_tiny").iterdir()) == [f"batch_{k}.jpg" for k in (1, 2, 3)]
    assert Darknet(cfg).load_darknet_weights(backup / "tiny_final.weights").header.seen == 3 * 8
    # results.csv holds the numbers the chart and the state keep (one [yolo] head: its parts are the totals)
    rows = list(csv.DictReader((backup / "results_tiny.csv").open()))
    history = load_state(backup / "tiny_last.pt")["history"]
    assert [int(r["iteration"]) for r in rows] == history["loss_iterations"] == [1, 2, 3]
    assert [float(r["avg_loss"]) for r in rows] == history["avg_loss"]
    for part in ("box", "obj", "cls"):
        assert [float(r[part]) for r in rows] == history["parts"][part]
        assert [r[part] for r in rows] == [r[f"{part}_0"] for r in rows]
    for row in rows:
        assert float(row["box"]) + float(row["obj"]) + float(row["cls"]) == pytest.approx(float(row["loss"]),
                                                                                        rel=1e-4)
        assert float(row["images_per_s"]) > 0 and float(row["lr"]) >= 0 and row["map"] == ""


def test_weights_start_at_their_iteration_unless_clear(synthetic_data, cfg_factory, tmp_path, capsys, caplog):
    cfg = cfg_factory(net={"max_batches": 6})
    weights = tmp_path / "start.weights"
    model = Darknet(cfg)
    model.header.seen = 4 * 8  # 4 iterations of batch 8
    model.save_darknet_weights(weights)
    common = ["--data", str(synthetic_data), "--cfg", str(cfg), "--weights", str(weights), "--workers", "0",
              "--quiet"]
    with caplog.at_level("INFO"):
        assert main(["train", *common, "--backup", str(tmp_path / "a")]) == 0
    assert "iterations 4..6" in caplog.text
    assert Darknet(cfg).load_darknet_weights(tmp_path / "a" / "tiny_final.weights").header.seen == 6 * 8
    caplog.clear()
    with caplog.at_level("INFO"):
        assert main(["train", *common, "--clear", "--backup", str(tmp_path / "b")]) == 0
    assert "iterations 0..6" in caplog.text
    model.header.seen = 6 * 8
    model.save_darknet_weights(weights)
    assert main(["train", *common]) == 2
    err = capsys.readouterr().err
    assert "already trained 6 iterations" in err and "pass --clear" in err


def test_backbone_weights_load_partially(synthetic_data, cfg_factory, tmp_path, capsys):
    cfg = cfg_factory(net={"max_batches": 1})
    full = tmp_path / "full.weights"
    Darknet(cfg).save_darknet_weights(full)
    assert main(["partial", "--cfg", str(cfg), "--weights", str(full), "--output", str(tmp_path / "b.conv.6"),
                 "--layers", "6"]) == 0
    flags = ["--workers", "0", "--quiet"]
    assert main(["train", str(synthetic_data), str(cfg), str(tmp_path / "b.conv.6"), *flags]) == 0  # by its name
    renamed = tmp_path / "backbone.weights"
    renamed.write_bytes((tmp_path / "b.conv.6").read_bytes())
    assert main(["train", str(synthetic_data), str(cfg), str(renamed), *flags]) == 2  # strict unless told
    assert "backbone.weights" in capsys.readouterr().err
    assert main(["train", str(synthetic_data), str(cfg), str(renamed), *flags, "--partial"]) == 0


def _write(path, text):
    path.write_text(text)
    return path


@pytest.mark.parametrize("case", ["no_data_file", "batch_1", "no_train_list", "wrong_weights", "no_state",
                                  "classes_mismatch", "map_without_names", "region_head"])
def test_bad_input_is_reported_clearly(case, synthetic_data, cfg_factory, tmp_path, capsys):
    cfg = cfg_factory(net={"max_batches": 2})
    data = synthetic_data
    extra: list[str] = []
    expected = ""
    if case == "no_data_file":
        data, expected = tmp_path / "missing.data", "missing.data: cannot read .data file"
    elif case == "batch_1":
        cfg = cfg_factory("b1.cfg", net={"batch": 1, "subdivisions": 1})
        expected = "b1.cfg:2 [net] batch: batch=1 cannot train"
    elif case == "no_train_list":
        data = _write(tmp_path / "t.data", f"classes = 3\ntrain = {tmp_path / 'nope.txt'}\n")
        expected = "nope.txt: image list not found"
    elif case == "wrong_weights":
        other = Darknet(cfg_factory("other.cfg", filters=(8, 16, 16)))
        other.save_darknet_weights(tmp_path / "other.weights")
        extra, expected = ["--weights", str(tmp_path / "other.weights")], "other.weights"
    elif case == "no_state":
        extra, expected = ["--resume", str(tmp_path / "gone.pt")], "training state not found: "
    elif case == "classes_mismatch":
        data = _write(tmp_path / "c.data", synthetic_data.read_text().replace("classes = 3", "classes = 5"))
        expected = "c.data: classes=5, but the cfg"
    elif case == "map_without_names":
        text = "".join(line for line in synthetic_data.read_text().splitlines(True) if not line.startswith("names"))
        data, extra = _write(tmp_path / "n.data", text), ["--map"]
        expected = "--map needs"
    elif case == "region_head":
        text = cfg.read_text()
        cfg = _write(tmp_path / "r.cfg", text[: text.index("[yolo]")] + "[region]\nanchors=1,1,2,2,3,3\nclasses=3\nnum=3\n")
        expected = "r.cfg:"
    assert main(["train", "--data", str(data), "--cfg", str(cfg), "--workers", "0", "--quiet", *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and expected in err, err


@pytest.mark.slow
def test_train_py_wrapper_takes_darknets_order(synthetic_data, cfg_factory, repo_root):
    cfg = cfg_factory(net={"max_batches": 2})
    done = subprocess.run([sys.executable, "train.py", str(synthetic_data), str(cfg), "--workers", "0", "--quiet"],
                          cwd=repo_root, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    assert "trained to iteration 2" in done.stdout
