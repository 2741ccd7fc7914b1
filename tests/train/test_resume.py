"""Resume: a run interrupted and resumed from ``<cfg>_last.pt`` ends bit for bit where an uninterrupted run ends.

Real pieces throughout: the training data pipeline (augmentation, multi-scale), Darknet's YOLO loss, the EMA.
Bit-exactness holds on CPU with the same thread count (the tests pin one thread).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from darknet_torch.train.checkpoint import load_state
from darknet_torch.train.run import TrainOptions, build_trainer

NET = {"batch": 8, "subdivisions": 2, "max_batches": 12, "learning_rate": 0.002, "burn_in": 4, "policy": "steps",
       "steps": "9", "scales": ".1", "ema_alpha": 0.9, "flip": 1, "hue": 0.1, "saturation": 1.5}
YOLO = {"jitter": 0.2, "random": 1}  # multi-scale: a new network size every 10 iterations


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def assert_same_state(a: dict, b: dict, path: str = "") -> None:
    """Recursive bit-exact comparison of two state dicts (tensors with torch.equal)."""
    assert type(a) is type(b), path
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for key in a:
            assert_same_state(a[key], b[key], f"{path}/{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_state(x, y, f"{path}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b), path
    else:
        assert a == b, path


def test_resumed_run_is_bit_exact(synthetic_data, cfg_factory, tmp_path):
    with open(synthetic_data, "a") as data:
        data.write("savelast = 4\n")
    cfg = cfg_factory(net=NET, yolo=YOLO)

    def options(backup: str, resume: bool = False, seed: int = 3) -> TrainOptions:
        return TrainOptions(data=synthetic_data, cfg=cfg, workers=0, seed=seed, backup=tmp_path / backup,
                            progress=False, resume=resume)

    straight = build_trainer(options("a"))
    straight.run()

    interrupted = build_trainer(options("b"))
    interrupted.run(stop_at=10)  # "killed" during iteration 11: the last state on disk is iteration 8
    assert load_state(tmp_path / "b" / "tiny_last.pt")["progress"]["iteration"] == 8
    resumed = build_trainer(options("b", resume=True, seed=0))  # the saved seed wins
    assert resumed.iteration == 8
    resumed.run()

    assert resumed.iteration == straight.iteration == 12
    assert resumed.rate == straight.rate == pytest.approx(0.0002)
    assert resumed.ema is not None and resumed.ema.initialized
    final_a, final_b = (tmp_path / run / "tiny_final.weights" for run in ("a", "b"))
    assert final_a.read_bytes() == final_b.read_bytes()
    state_a, state_b = (load_state(tmp_path / run / "tiny_last.pt") for run in ("a", "b"))
    assert_same_state(state_a, state_b)  # model, optimizer momentum, EMA, RNG, loss history, counters


@pytest.mark.slow
def test_killed_process_resumes_exactly(synthetic_data, cfg_factory, tmp_path):
    """SIGKILL a real ``darknet_torch train`` process mid-run, resume it with ``--resume``: the final weights are
    byte-identical to those of an uninterrupted run (data loader workers included)."""
    with open(synthetic_data, "a") as data:
        data.write("savelast = 5\n")
    cfg = cfg_factory(net={**NET, "max_batches": 40, "steps": "30"}, yolo=YOLO)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

    def command(backup: str, *extra: str) -> list[str]:
        return [sys.executable, "-m", "darknet_torch", "train", "--data", str(synthetic_data), "--cfg", str(cfg),
                "--workers", "2", "--seed", "5", "--quiet", "--backup", str(tmp_path / backup), *extra]

    subprocess.run(command("straight"), env=env, check=True, capture_output=True)

    process = subprocess.Popen(command("killed"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = tmp_path / "killed" / "tiny_last.pt"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if state.exists() and load_state(state)["progress"]["iteration"] >= 10:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "training finished before it could be killed"
    killed_at = load_state(state)["progress"]["iteration"]
    assert 10 <= killed_at < 40
    assert not (tmp_path / "killed" / "tiny_final.weights").exists()

    resumed = subprocess.run(command("killed", "--resume"), env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert "trained to iteration 40" in resumed.stdout
    straight, again = (tmp_path / run / "tiny_final.weights" for run in ("straight", "killed"))
    assert straight.read_bytes() == again.read_bytes()


def test_resume_needs_a_state(synthetic_data, tiny_cfg, tmp_path):
    from darknet_torch.errors import DarknetError

    with pytest.raises(DarknetError, match=r"training state not found: .*backup/tiny_last.pt"):
        build_trainer(TrainOptions(data=synthetic_data, cfg=tiny_cfg, workers=0, resume=True,
                                   backup=tmp_path / "backup", progress=False))


def test_resume_with_another_cfg_is_refused(synthetic_data, cfg_factory, tmp_path):
    from darknet_torch.errors import DarknetError

    with open(synthetic_data, "a") as data:
        data.write("savelast = 2\n")
    first = cfg_factory("net.cfg", net={"max_batches": 2})
    build_trainer(TrainOptions(data=synthetic_data, cfg=first, workers=0, backup=tmp_path, progress=False)).run()
    other = cfg_factory("net2.cfg", net={"max_batches": 4}, filters=(8, 16, 16))
    with pytest.raises(DarknetError, match="net_last.pt does not match this cfg"):
        build_trainer(TrainOptions(data=synthetic_data, cfg=other, workers=0, backup=tmp_path, progress=False,
                                   resume=Path(tmp_path / "net_last.pt")))
