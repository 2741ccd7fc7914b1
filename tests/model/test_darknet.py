"""Darknet's derived properties: ``net`` (the [net] settings) and ``stride`` (the largest head stride)."""
from __future__ import annotations

from pathlib import Path

import pytest

from darknet_torch import Darknet
from darknet_torch.config import parse_cfg_text, type_sections

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
