"""Checkpoints: Darknet's file names and save rules, loadable .weights with seen, the state file, atomic writes,
partial backbones."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from darknet_torch.cli.main import main
from darknet_torch.errors import DarknetError, WeightsError
from darknet_torch.model.darknet import Darknet
from darknet_torch.model.loading import load_model
from darknet_torch.model.weights import param_slots
from darknet_torch.train.checkpoint import CheckpointPaths, basecfg, load_state, save_state, write_partial
from darknet_torch.train.loop import LoopOptions, Trainer
from darknet_torch.train.optim import TrainSettings


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def run_trainer(cfg: Path, backup: Path, stream_factory, criterion, stop_at=None, ema_alpha=None, **loop) -> Trainer:
    torch.manual_seed(0)
    model = Darknet(cfg)
    settings = TrainSettings.from_net(model.hyperparams)
    trainer = Trainer(model, settings, stream_factory(settings.mini_batch, settings.subdivisions),
                      CheckpointPaths(backup, basecfg(cfg)), LoopOptions(progress=False, **loop),
                      criterion=criterion(model), ema_alpha=ema_alpha)
    trainer.run(stop_at=stop_at)
    return trainer


def header_seen(path: Path) -> int:
    major, minor, _ = np.fromfile(path, "<i4", 3)
    assert (major, minor) == (0, 2)
    return int(np.fromfile(path, "<u8", 1, offset=12)[0])


def test_basecfg_is_darknets():
    assert basecfg("cfg/yolov3-tiny.cfg") == "yolov3-tiny"
    assert basecfg("/a/b.c/my.model.cfg") == "my"  # cut at the first dot of the file name


def test_own_names_cover_this_runs_files_only(tmp_path):
    paths = CheckpointPaths(tmp_path, "tiny")
    mine = [paths.weights("last"), paths.weights(1000), paths.weights("best"), paths.weights("ema"),
            paths.weights("final"), paths.state, paths.chart, paths.results]
    assert all(path.name.startswith(paths.own_names) for path in mine)
    others = CheckpointPaths(tmp_path, "tiny-2")
    assert not any(path.name.startswith(paths.own_names)
                   for path in (others.weights("last"), others.state, others.chart, others.results))


def test_darknet_save_rules_names_and_seen(cfg_factory, stream_factory, squared_output_loss, tmp_path):
    cfg = cfg_factory("net1.cfg", net={"batch": 4, "subdivisions": 2, "max_batches": 23, "learning_rate": 0.001})
    backup = tmp_path / "backup"
    trainer = run_trainer(cfg, backup, stream_factory, squared_output_loss, save_every=10, save_last_every=4)
    names = sorted(p.name for p in backup.iterdir())
    assert names == ["chart_net1.png", "net1_10.weights", "net1_20.weights", "net1_final.weights", "net1_last.pt",
                     "net1_last.weights", "results_net1.csv"]
    assert header_seen(backup / "net1_10.weights") == 10 * 4
    assert header_seen(backup / "net1_20.weights") == 20 * 4
    assert header_seen(backup / "net1_last.weights") == 20 * 4  # last save at 20 (every 4 iterations)
    assert header_seen(backup / "net1_final.weights") == 23 * 4
    final = Darknet(cfg).load_darknet_weights(backup / "net1_final.weights")  # strict: exact size for the cfg
    for a, b in zip(final.state_dict().values(), trainer.model.state_dict().values()):
        if a.is_floating_point():
            assert torch.equal(a, b)
    state = load_state(backup / "net1_last.pt")
    assert state["progress"]["iteration"] == 23 and state["seen"] == 92


def test_saves_at_multiples_after_an_unaligned_start(cfg_factory, stream_factory, squared_output_loss, tmp_path):
    """Darknet saves when ``iteration >= last_save + period`` or at a multiple of the period, counting from the
    start iteration: with one iteration per step that is every multiple."""
    cfg = cfg_factory(net={"batch": 2, "subdivisions": 1, "max_batches": 14})
    torch.manual_seed(0)
    model = Darknet(cfg)
    settings = TrainSettings.from_net(model.hyperparams)
    trainer = Trainer(model, settings, stream_factory(2, 1), CheckpointPaths(tmp_path, "tiny"),
                      LoopOptions(save_every=5, save_last_every=100, progress=False),
                      criterion=squared_output_loss(model))
    trainer.start_at(3)  # as from weights with seen = 6
    trainer.run()
    saved = sorted(int(p.stem.split("_")[1]) for p in tmp_path.glob("tiny_[0-9]*.weights"))
    assert saved == [5, 10]
    assert header_seen(tmp_path / "tiny_final.weights") == 14 * 2


def test_state_file_is_weights_only_and_a_model_file(cfg_factory, stream_factory, squared_output_loss, tmp_path):
    cfg = cfg_factory(net={"max_batches": 4})
    trainer = run_trainer(cfg, tmp_path, stream_factory, squared_output_loss, save_every=100, save_last_every=2)
    state = torch.load(tmp_path / "tiny_last.pt", weights_only=True)  # would raise on any pickled object
    assert set(state) >= {"model", "optimizer", "ema", "progress", "history", "rng", "schedule", "seed"}
    assert any("momentum_buffer" in s for s in state["optimizer"]["state"].values())
    model = load_model(cfg, tmp_path / "tiny_last.pt", fuse=False)
    for a, b in zip(model.parameters(), trainer.model.parameters()):
        assert torch.equal(a, b)


def test_ema_weights_are_saved_once_initialised(cfg_factory, stream_factory, squared_output_loss, tmp_path):
    cfg = cfg_factory(net={"max_batches": 6, "ema_alpha": 0.9})  # EMA starts at 3; apply point -994 is never hit
    trainer = run_trainer(cfg, tmp_path, stream_factory, squared_output_loss, save_every=100, save_last_every=2)
    ema = Darknet(cfg).load_darknet_weights(tmp_path / "tiny_ema.weights")
    conv = ema.module_list[0].conv.weight
    with trainer.ema.swapped_in():
        assert torch.equal(conv, trainer.model.module_list[0].conv.weight)
    assert not torch.equal(conv, trainer.model.module_list[0].conv.weight)
    # BN rolling statistics are the live network's (Darknet's save_weights_upto(..., save_ema=1))
    assert torch.equal(ema.module_list[0].bn.running_mean, trainer.model.module_list[0].bn.running_mean)


def test_a_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "x_last.pt"
    save_state(path, {"model": {"w": torch.ones(3)}})
    before = path.read_bytes()

    def killed(*_args):
        raise KeyboardInterrupt  # the process dies between writing the temporary file and renaming it

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        save_state(path, {"model": {"w": torch.zeros(3)}})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["x_last.pt"]  # no temporary file left behind
    assert torch.equal(load_state(path)["model"]["w"], torch.ones(3))


def test_bad_state_files_are_reported(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(DarknetError, match="junk.pt: not a darknet_torch training state"):
        load_state(junk)
    plain = tmp_path / "plain.pt"
    torch.save({"model": {}}, plain)
    with pytest.raises(DarknetError, match="plain.pt: not a darknet_torch training state"):
        load_state(plain)
    with pytest.raises(DarknetError, match="training state not found: .*missing.pt"):
        load_state(tmp_path / "missing.pt")


def test_partial_keeps_the_first_layers(tiny_cfg, tmp_path):
    torch.manual_seed(1)
    full = Darknet(tiny_cfg)
    full.header.seen = 12345
    full.save_darknet_weights(tmp_path / "full.weights")
    out = tmp_path / "tiny.conv.4"
    assert main(["partial", "--cfg", str(tiny_cfg), "--weights", str(tmp_path / "full.weights"),
                 "--output", str(out), "--layers", "4"]) == 0
    expected_floats = sum(s.numel for s in param_slots(full.module_list, full.layer_labels(), cutoff=4))
    assert out.stat().st_size == 20 + 4 * expected_floats  # header (0.2.x: 8-byte seen) + layers 0..3
    assert header_seen(out) == 0  # Darknet's partial resets seen
    with pytest.raises(WeightsError):
        Darknet(tiny_cfg).load_darknet_weights(out)  # a backbone is not a full file...
    backbone = Darknet(tiny_cfg).load_darknet_weights(out, partial=True)  # ...but loads as one
    for index, (a, b) in enumerate(zip(backbone.module_list, full.module_list)):
        same = all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
        assert same == (index < 4 or not list(a.parameters())), index


def test_partial_of_the_real_weights(real_weights, shared_dir, tmp_path):
    cfg = shared_dir / "golden" / "real" / "yolov3-tiny.cfg"
    model = write_partial(cfg, real_weights, tmp_path / "yolov3-tiny.conv.15", 15)
    slots = param_slots(model.module_list, model.layer_labels(), cutoff=15)
    assert (tmp_path / "yolov3-tiny.conv.15").stat().st_size == 20 + 4 * sum(s.numel for s in slots)
    reference = Darknet(cfg).load_darknet_weights(real_weights)
    backbone = Darknet(cfg).load_darknet_weights(tmp_path / "yolov3-tiny.conv.15", partial=True)
    assert torch.equal(backbone.module_list[13].conv.weight, reference.module_list[13].conv.weight)
    assert not torch.equal(backbone.module_list[15].conv.weight, reference.module_list[15].conv.weight)


def test_partial_bad_input(tiny_cfg, tmp_path, capsys):
    weights = tmp_path / "w.weights"
    Darknet(tiny_cfg).save_darknet_weights(weights)
    assert main(["partial", "--cfg", str(tiny_cfg), "--weights", str(weights), "--output",
                 str(tmp_path / "o"), "--layers", "99"]) == 2
    assert "--layers 99" in capsys.readouterr().err
    assert main(["partial", "--cfg", str(tiny_cfg), "--weights", str(tmp_path / "nope.weights"), "--output",
                 str(tmp_path / "o"), "--layers", "2"]) == 2
    assert "nope.weights" in capsys.readouterr().err
