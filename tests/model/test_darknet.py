"""Darknet's derived properties: ``net`` (the [net] settings) and ``stride`` (the largest head stride); which layers
an inference forward runs on one thread."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import darknet_torch.model.darknet as darknet_module
from darknet_torch import Darknet
from darknet_torch.config import parse_cfg_text, type_sections
from darknet_torch.errors import CfgError
from darknet_torch.model.fast import FastConv, optimize_for_inference
from darknet_torch.model.heads import YOLOLayer
from darknet_torch.model.layers.conv import ConvBlock
from darknet_torch.model.darknet import same_bits_on_one_thread
from darknet_torch.model.layers.pooling import MaxPool
from darknet_torch.model.layers.reshape import Upsample
from darknet_torch.model.layers.routing import Route, Sam, Shortcut
from darknet_torch.model.layers.simple import ActivationLayer
from darknet_torch.runtime import torch_threads

CFG_DIR = Path(__file__).resolve().parents[2] / "cfg"
# Largest head stride of each architecture (input / coarsest grid), known from the papers.
LARGEST_STRIDE = {"yolov3-tiny": 32, "yolov4-tiny": 32, "yolov7-tiny": 32}


@pytest.mark.parametrize("name", LARGEST_STRIDE)
def test_stride_is_the_largest_head_stride(name):
    model = Darknet(CFG_DIR / f"{name}.cfg")
    assert model.stride == LARGEST_STRIDE[name]
    assert model.net.input_size == model.input_size == (model.hyperparams["height"], model.hyperparams["width"])


def test_a_network_without_heads_has_stride_1():
    text = "[net]\nwidth=16\nheight=16\nchannels=3\n[convolutional]\nfilters=4\nsize=3\nstride=2\npad=1\n"
    assert Darknet(type_sections(parse_cfg_text(text, "plain.cfg"))).stride == 1


def _threads_per_layer(model: Darknet, x: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
    """The forward's output and torch's thread count inside each layer."""
    counts: list[int] = []
    handles = [m.register_forward_hook(lambda *_: counts.append(torch.get_num_threads())) for m in model.module_list]
    try:
        with torch.inference_mode():
            out = model(x)
    finally:
        for handle in handles:
            handle.remove()
    return out, counts


@pytest.mark.parametrize("fast", [False, True], ids=["plain", "exact"])
def test_exact_element_wise_layers_run_on_one_thread_when_openmp_waits_passively(monkeypatch: pytest.MonkeyPatch,
                                                                                 fast: bool):
    model = Darknet(CFG_DIR / "yolov3-tiny.cfg").eval()
    model = optimize_for_inference(model) if fast else model
    # 416: the heads' maps (41067 and 164268 values) are split between threads, where exp-based ops would differ
    x = torch.rand(1, 3, 416, 416, generator=torch.Generator().manual_seed(0))
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    with torch_threads(2):
        spinning, counts = _threads_per_layer(model, x)
        assert model.serial_layers() == frozenset() and set(counts) == {2}
        monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
        serial = model.serial_layers()
        passive, counts = _threads_per_layer(model, x)
        assert torch.get_num_threads() == 2
        # the first pool's input holds 16 x 416 x 416 = 2768896 values, the second's 32 x 208 x 208 = 1384448
        monkeypatch.setattr(darknet_module, "SERIAL_MAX_VALUES", 2_000_000)
        _, large_inputs_parallel = _threads_per_layer(model, x)
    pools = {i for i, m in enumerate(model.module_list) if isinstance(m, MaxPool)}
    assert len(pools) == 6 and pools <= serial
    assert [i for i, count in enumerate(counts) if count == 1] == sorted(serial)
    assert not any(isinstance(model.module_list[i], (ConvBlock, FastConv, YOLOLayer)) for i in serial)
    assert torch.equal(passive, spinning)  # one thread changes no bit in these layers
    assert large_inputs_parallel[1] == 2 and large_inputs_parallel[3] == 1
    model.train()
    assert model.serial_layers() == frozenset()
    model.eval()
    monkeypatch.setattr(torch.jit, "is_tracing", lambda: True)  # an ONNX export traces one graph for any machine
    assert model.serial_layers() == frozenset()


@pytest.mark.parametrize("module, same", [
    (Shortcut((1,), "leaky"), True), (Shortcut((1,), "linear"), True), (Shortcut((1,), "mish"), False),
    (Sam(1, "logistic"), False), (ActivationLayer("swish"), False), (ActivationLayer("relu"), True),
    (Upsample(2, 1.0), True), (Upsample(-2, 1.0), False), (Route((1, 2)), True),
])
def test_only_layers_whose_bits_cannot_depend_on_the_thread_count_are_serial(module, same: bool):
    assert same_bits_on_one_thread(module) is same



GRAY_DETECTOR = ("[net]\nwidth=32\nheight=32\nchannels=1\n[convolutional]\nfilters=6\nsize=1\nactivation=linear\n"
                 "[yolo]\nmask=0\nanchors=10,14\nclasses=1\nnum=1\n")


def test_a_grayscale_cfg_is_refused_before_images_naming_the_channels_line():
    """[net] channels=1 builds, but the image paths decode RGB: refused by name instead of a oneDNN traceback."""
    model = Darknet(type_sections(parse_cfg_text(GRAY_DETECTOR, "gray.cfg")))
    with pytest.raises(CfgError, match=r"gray.cfg:4 \[net\] channels: channels=1: inference feeds the network "
                                       r"3-channel RGB"):
        model.check_rgb_input("inference")
