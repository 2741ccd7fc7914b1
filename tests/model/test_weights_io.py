"""Weights files: byte-identical round trips, and clear errors for files that do not fit the cfg."""
from __future__ import annotations

import hashlib
import shutil

import numpy as np
import pytest
import torch

from darknet_torch import Darknet, WeightsError
from tests.golden import golden_runs, load_run

MINI = golden_runs("mini")


def _md5(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("folder", MINI, ids=[p.name for p in MINI])
def test_mini_weights_round_trip_is_byte_identical(folder, tmp_path):
    run = load_run(folder)
    model = Darknet(run.cfg).load_darknet_weights(run.weights)
    out = tmp_path / "copy.weights"
    model.save_darknet_weights(out)
    assert out.read_bytes() == run.weights.read_bytes()


def test_real_weights_round_trip_is_byte_identical(real_weights, golden_dir, tmp_path):
    model = Darknet(golden_dir / "real" / "yolov3-tiny.cfg").load_darknet_weights(real_weights)
    assert (model.header.major, model.header.minor, model.header.revision) == (0, 2, 0)
    assert model.seen == 32013312
    out = tmp_path / "copy.weights"
    model.save_darknet_weights(out)
    assert _md5(out) == "3bcd6b390912c18924b46b26a9e7ff53"


def test_real_yolov4_tiny_weights_load_strictly_and_round_trip(yolov4_tiny_weights, repo_root, tmp_path):
    """The default model's official file fits the project's cfg exactly and is written back byte for byte."""
    model = Darknet(repo_root / "cfg" / "yolov4-tiny.cfg").load_darknet_weights(yolov4_tiny_weights)
    assert (model.header.major, model.header.minor, model.header.revision) == (0, 2, 5)
    out = tmp_path / "copy.weights"
    model.save_darknet_weights(out)
    assert _md5(out) == "8911bf808aed305d6854c4ea48fcc731"


@pytest.fixture()
def tiny_run():
    if not MINI:
        pytest.skip("../shared/golden/mini is absent")
    return load_run(next(p for p in MINI if p.name == "yolov3-tiny"))


def test_truncated_file_names_the_layer(tiny_run, tmp_path):
    data = tiny_run.weights.read_bytes()
    cut = tmp_path / "cut.weights"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match=r"ends inside layer \d+ \(.*yolov3-tiny.cfg:\d+ \[convolutional\]\)"):
        Darknet(tiny_run.cfg).load_darknet_weights(cut)


def test_extra_bytes_are_an_error(tiny_run, tmp_path):
    longer = tmp_path / "long.weights"
    longer.write_bytes(tiny_run.weights.read_bytes() + np.zeros(10, "<f4").tobytes())
    with pytest.raises(WeightsError, match="10 left over"):
        Darknet(tiny_run.cfg).load_darknet_weights(longer)


def test_body_not_whole_floats_is_an_error(tiny_run, tmp_path):
    odd = tmp_path / "odd.weights"
    odd.write_bytes(tiny_run.weights.read_bytes() + b"\x00")
    with pytest.raises(WeightsError, match="not a whole number of float32"):
        Darknet(tiny_run.cfg).load_darknet_weights(odd)


def test_classes_mismatch_points_at_where_the_file_stops_matching(tiny_run, tmp_path):
    text = tiny_run.cfg.read_text().replace("classes=4", "classes=3").replace("filters=27", "filters=24")
    cfg = tmp_path / "three.cfg"
    cfg.write_text(text)
    with pytest.raises(WeightsError, match=r"classes=/filters= differ.*stops matching the cfg at or before layer 18"):
        Darknet(cfg).load_darknet_weights(tiny_run.weights)


def test_partial_backbone_and_cutoff(tiny_run, tmp_path):
    full = Darknet(tiny_run.cfg).load_darknet_weights(tiny_run.weights)
    backbone = tmp_path / "tiny.conv.15"
    full.save_darknet_weights(backbone, cutoff=15)
    with pytest.raises(WeightsError, match=r"train --partial .*partial=True in Python, or a smaller partial --layers"):
        Darknet(tiny_run.cfg).load_darknet_weights(backbone)
    model = Darknet(tiny_run.cfg).load_darknet_weights(backbone, partial=True)
    assert torch.equal(model.module_list[13].conv.weight, full.module_list[13].conv.weight)
    assert not torch.equal(model.module_list[15].conv.weight, full.module_list[15].conv.weight)
    prefix = Darknet(tiny_run.cfg).load_darknet_weights(tiny_run.weights, cutoff=15)
    assert torch.equal(prefix.module_list[13].conv.weight, full.module_list[13].conv.weight)


def test_a_refused_partial_file_leaves_the_model_as_it_was(tiny_run, tmp_path):
    """The layer-boundary check runs before any copy: it used to raise after overwriting every earlier layer."""
    model = Darknet(tiny_run.cfg)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data = tiny_run.weights.read_bytes()
    cut = tmp_path / "cut.weights"
    cut.write_bytes(data[: len(data) - 4 * 10])
    with pytest.raises(WeightsError, match="ends in the middle of layer"):
        model.load_darknet_weights(cut, partial=True)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_a_fused_model_runs_on_the_weights_loaded_into_it(tiny_run):
    """Loading keeps the model fused and the folded kernels follow the new values."""
    x = torch.rand(1, 3, *Darknet(tiny_run.cfg).input_size)
    model = Darknet(tiny_run.cfg).eval().fuse()
    with torch.no_grad():
        model(x)
        fused = model.load_darknet_weights(tiny_run.weights)(x)
        expected = Darknet(tiny_run.cfg).load_darknet_weights(tiny_run.weights).eval()(x)
    assert all(m.fuse_bn for m in model.modules() if hasattr(m, "fuse_bn"))
    torch.testing.assert_close(fused, expected, rtol=1e-4, atol=1e-4)


def test_missing_file_and_garbage_header(tiny_run, tmp_path):
    with pytest.raises(WeightsError, match="cannot read weights file"):
        Darknet(tiny_run.cfg).load_darknet_weights(tmp_path / "nope.weights")
    short = tmp_path / "short.weights"
    short.write_bytes(b"abc")
    with pytest.raises(WeightsError, match="too short for a Darknet weights header"):
        Darknet(tiny_run.cfg).load_darknet_weights(short)


OTHER_LAYERS_CFG = """
[net]
width=8
height=8
channels=2
[convolutional]
filters=4
size=3
pad=1
activation=leaky
[batchnorm]
[shortcut]
from=-2
weights_type=per_channel
weights_normalization=softmax
[connected]
output=5
batch_normalize=1
activation=linear
"""


def _write_cfg(tmp_path, text: str, name: str = "net.cfg"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_other_weighted_layers_load_in_darknet_order(tmp_path):
    """conv (no BN): biases, weights; batchnorm: biases, scales, mean, var; shortcut: weights; connected+BN:
    biases, weights, scales, mean, var (parser.c save_*_weights)."""
    model = Darknet(_write_cfg(tmp_path, OTHER_LAYERS_CFG))
    sizes = [4, 4 * 2 * 9, 4, 4, 4, 4, 2 * 4, 5, 5 * 256, 5, 5, 5]
    values = np.arange(sum(sizes), dtype="<f4")
    header = np.array([0, 2, 5], "<i4").tobytes() + np.array([7], "<u8").tobytes()
    path = tmp_path / "net.weights"
    path.write_bytes(header + values.tobytes())
    model.load_darknet_weights(path)
    chunks = np.split(values, np.cumsum(sizes)[:-1])
    conv, bn, shortcut, connected = (model.module_list[i] for i in range(4))
    expected = [conv.conv.bias, conv.conv.weight, bn.bn.bias, bn.bn.weight, bn.bn.running_mean, bn.bn.running_var,
                shortcut.weights, connected.bn.bias, connected.linear.weight, connected.bn.weight,
                connected.bn.running_mean, connected.bn.running_var]
    for chunk, tensor in zip(chunks, expected):
        assert np.array_equal(tensor.detach().numpy().ravel(), chunk)
    out = tmp_path / "again.weights"
    model.save_darknet_weights(out)
    assert out.read_bytes() == path.read_bytes()
    assert model.seen == 7


def test_dontload_and_dontloadscales_read_nothing_for_what_they_mark(tmp_path):
    """parser.c load_weights_upto: a ``dontload=1`` layer is passed over without reading, and ``dontloadscales=1``
    reads no scales/mean/variance ([connected] here); ``[batchnorm]`` reads its scales regardless.  The file holds
    only what is read, in order, and the marked tensors keep their values."""
    cfg_text = OTHER_LAYERS_CFG.replace("activation=leaky\n", "activation=leaky\ndontload=1\n") \
        .replace("[batchnorm]\n", "[batchnorm]\ndontloadscales=1\n").replace("batch_normalize=1\n",
                                                                           "batch_normalize=1\ndontloadscales=1\n")
    model = Darknet(_write_cfg(tmp_path, cfg_text))
    conv, bn, shortcut, connected = (model.module_list[i] for i in range(4))
    untouched = {name: t.detach().clone() for name, t in [("conv.w", conv.conv.weight), ("conv.b", conv.conv.bias),
                                                          ("fc.scale", connected.bn.weight),
                                                          ("fc.var", connected.bn.running_var)]}
    sizes = [4, 4, 4, 4, 2 * 4, 5, 5 * 256]
    values = np.arange(1, sum(sizes) + 1, dtype="<f4")
    path = tmp_path / "net.weights"
    path.write_bytes(np.array([0, 2, 5], "<i4").tobytes() + np.array([0], "<u8").tobytes() + values.tobytes())
    model.load_darknet_weights(path)
    read = [bn.bn.bias, bn.bn.weight, bn.bn.running_mean, bn.bn.running_var, shortcut.weights, connected.bn.bias,
            connected.linear.weight]
    for chunk, tensor in zip(np.split(values, np.cumsum(sizes)[:-1]), read):
        assert np.array_equal(tensor.detach().numpy().ravel(), chunk)
    kept = {"conv.w": conv.conv.weight, "conv.b": conv.conv.bias, "fc.scale": connected.bn.weight,
            "fc.var": connected.bn.running_var}
    assert all(torch.equal(kept[name], before) for name, before in untouched.items())


def test_old_header_with_32bit_seen_and_transposed_connected(tmp_path):
    cfg = _write_cfg(tmp_path, "[net]\nwidth=1\nheight=1\nchannels=3\n[connected]\noutput=2\nactivation=linear\n")
    model = Darknet(cfg)
    weights = np.array([[1, 2, 3], [4, 5, 6]], "<f4")  # [out][in]
    header = np.array([0, 1, 0], "<i4").tobytes() + np.array([9], "<u4").tobytes()
    path = tmp_path / "old.weights"
    path.write_bytes(header + np.zeros(2, "<f4").tobytes() + weights.tobytes())
    model.load_darknet_weights(path)
    assert model.seen == 9 and torch.equal(model.module_list[0].linear.weight, torch.from_numpy(weights))
    transposed = tmp_path / "transposed.weights"
    header = np.array([0, 1001, 0], "<i4").tobytes() + np.array([9], "<u8").tobytes()
    transposed.write_bytes(header + np.zeros(2, "<f4").tobytes() + weights.T.copy().tobytes())
    model.load_darknet_weights(transposed)
    assert torch.equal(model.module_list[0].linear.weight, torch.from_numpy(weights))
    copy = tmp_path / "copy.weights"
    model.save_darknet_weights(copy)
    assert copy.read_bytes() == transposed.read_bytes()


def test_save_is_atomic_and_leaves_no_temp_files(tiny_run, tmp_path):
    model = Darknet(tiny_run.cfg).load_darknet_weights(tiny_run.weights)
    target = tmp_path / "out.weights"
    shutil.copy(tiny_run.weights, target)
    model.save_darknet_weights(target)
    assert [p.name for p in tmp_path.iterdir()] == ["out.weights"]
