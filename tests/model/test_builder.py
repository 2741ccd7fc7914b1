"""Build-time cfg errors of ``model.builder``: each names file:line [section] key instead of failing in forward."""
from __future__ import annotations

import pytest

from darknet_torch import CfgError, Darknet
from darknet_torch.config import parse_cfg_text, type_sections

# 4x6x6 after the conv (line 5); the tested section starts on line 8, its key on line 9.
NET = "[net]\nwidth=6\nheight=6\nchannels=3\n[convolutional]\nfilters=4\nsize=1\n"


def _build(text: str) -> Darknet:
    return Darknet(type_sections(parse_cfg_text(NET + text, "t.cfg")))


@pytest.mark.parametrize("groups,message", [
    (5, r"t.cfg:9 \[softmax\] groups: groups=5 must divide the layer's 144 inputs \(4x6x6\)"),
    (0, r"t.cfg:9 \[softmax\] groups: groups must be >= 1, got 0"),
    (-2, r"t.cfg:9 \[softmax\] groups: groups must be >= 1, got -2"),
])
def test_softmax_groups_must_divide_the_inputs(groups, message):
    """make_softmax_layer asserts inputs % groups == 0; the forward's reshape used to fail instead."""
    with pytest.raises(CfgError, match=message):
        _build(f"[softmax]\ngroups={groups}\n")


def test_softmax_groups_that_divide_build():
    model = _build("[softmax]\ngroups=16\n")
    assert model.layer_infos[-1].out_shape == (4, 6, 6)


@pytest.mark.parametrize("stride,message", [
    (0, r"t.cfg:9 \[upsample\] stride: stride must not be 0"),
    (-4, r"t.cfg:9 \[upsample\] stride: stride=-4 must divide the input size 6x6"),
    (-12, r"t.cfg:9 \[upsample\] stride: stride=-12 must divide the input size 6x6"),  # would be a 0x0 output
])
def test_upsample_stride_zero_or_not_dividing_is_an_error(stride, message):
    with pytest.raises(CfgError, match=message):
        _build(f"[upsample]\nstride={stride}\n")


@pytest.mark.parametrize("stride,shape", [(2, (4, 12, 12)), (-3, (4, 2, 2)), (-6, (4, 1, 1))])
def test_upsample_strides_that_work_build(stride, shape):
    assert _build(f"[upsample]\nstride={stride}\n").layer_infos[-1].out_shape == shape


def _region(anchors: str) -> Darknet:
    text = f"[convolutional]\nfilters=14\nsize=1\n[region]\nclasses=2\nnum=2\n{anchors}"
    return Darknet(type_sections(parse_cfg_text(NET.replace("filters=4\nsize=1\n", "") + text, "t.cfg")))


def test_missing_region_anchors_are_darknets_default_half():
    """make_region_layer sets every bias to .5 before the cfg's values are read: they used to be 0 (0x0 boxes)."""
    assert _region("").module_list[-1].anchors.tolist() == [[0.5, 0.5], [0.5, 0.5]]


def test_yolo_anchors_missing_for_a_used_anchor_say_what_darknet_reads():
    with pytest.raises(CfgError, match=r"t.cfg:\d+ \[yolo\] anchors: .* are used: Darknet would leave their missing "
                                       r"values at its default 0.5"):
        _build("[convolutional]\nfilters=12\nsize=1\n[yolo]\nmask=0,1\nanchors=10,14,23\nclasses=1\nnum=2\n")
