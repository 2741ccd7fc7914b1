"""``train.run``: the .data file's save periods, mixed precision, and what start-up refuses."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

from darknet_torch.distributed import DistContext
from darknet_torch.errors import CfgError, DataError
from darknet_torch.train.run import TrainOptions, _data_int, _mixed_precision, build_trainer


def _data(**extra: str) -> SimpleNamespace:
    return SimpleNamespace(path=Path("t.data"), config=SimpleNamespace(extra=extra))


def test_save_periods_default_and_value():
    assert _data_int(_data(), "savelast", 100) == 100
    assert _data_int(_data(savelast="7"), "savelast", 100) == 7


@pytest.mark.parametrize("text", ["0", "-5", "1_0", "\u00b2", "\u0663", "1.5"])
def test_save_period_that_is_not_a_plain_positive_integer_is_a_cfg_error(text):
    """'²'.isdigit() is True but int('²') raises: it used to escape as a ValueError traceback."""
    with pytest.raises(CfgError, match=r"t.data: savelast=.* must be a positive number of iterations"):
        _data_int(_data(savelast=text), "savelast", 100)


@pytest.mark.parametrize("native", [True, False])
def test_amp_on_a_cpu_without_native_bfloat16_trains_in_float32_and_says_so(native, monkeypatch, caplog):
    monkeypatch.setattr("darknet_torch.train.run.native_bfloat16", lambda device: native)
    cpu = DistContext(device=torch.device("cpu"))
    with caplog.at_level("WARNING", logger="darknet_torch.train.run"):
        assert _mixed_precision(True, cpu) is native
        assert _mixed_precision(None, cpu) is False  # the CPU default: off
        assert _mixed_precision(False, cpu) is False
    assert ("no bfloat16 convolution kernels" in caplog.text) is not native
    caplog.clear()
    with caplog.at_level("WARNING", logger="darknet_torch.train.run"):
        assert _mixed_precision(True, DistContext(rank=1, world_size=2, device=torch.device("cpu"))) is native
    assert caplog.text == ""  # only rank 0 says it
    assert _mixed_precision(None, DistContext(device=torch.device("cuda"))) is True  # float16 on CUDA: no check


def test_map_refuses_a_valid_image_without_label_name_at_start_up(synthetic_data, cfg_factory, tmp_path):
    """train --map: a ``valid=`` image whose label file cannot be named stops build_trainer, before any iteration
    (not the first evaluation, possibly hours later)."""
    Image.new("RGB", (32, 32)).save(tmp_path / "b.webp")
    (tmp_path / "valid.txt").write_text(f"{tmp_path / 'b.webp'}\n")
    text = "".join(line for line in synthetic_data.read_text().splitlines(True) if not line.startswith("valid"))
    data = tmp_path / "v.data"
    data.write_text(f"{text}valid = {tmp_path / 'valid.txt'}\n")
    options = TrainOptions(data, cfg_factory(net={"max_batches": 2}), device="cpu", calc_map=True, progress=False)
    with pytest.raises(DataError, match="b.webp: cannot infer the label file name"):
        build_trainer(options)


def test_a_grayscale_cfg_is_refused_before_training(synthetic_data, cfg_factory):
    """Training images are decoded RGB; a [net] channels=1 cfg is refused naming the line, not in the first conv."""
    options = TrainOptions(synthetic_data, cfg_factory(net={"channels": 1, "max_batches": 2}), device="cpu",
                           progress=False)
    with pytest.raises(CfgError, match=r"\[net\] channels: channels=1: training feeds"):
        build_trainer(options)
