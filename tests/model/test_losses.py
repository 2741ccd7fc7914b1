"""The loss table: heads are looked up by type, a head without a loss is refused by its cfg line, and the head
modules do not import their losses (one-way imports)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from darknet_torch.config import parse_cfg_text, type_sections
from darknet_torch.errors import DarknetError
from darknet_torch.model.darknet import Darknet
from darknet_torch.model.heads import GaussianYOLOLayer, RegionLayer, YOLOLayer, region, yolo
from darknet_torch.model.heads.yolo_loss import yolo_loss
from darknet_torch.model.losses import LOSSES, head_loss, trainable

REGION_CFG = """[net]
width=32
height=32
channels=3
[convolutional]
filters=18
size=1
activation=linear
[region]
anchors=1,1,2,2,3,3
classes=1
num=3
"""


def test_yolo_heads_train_with_yolo_loss_and_the_others_are_refused():
    assert LOSSES == {YOLOLayer: yolo_loss}
    assert not trainable(GaussianYOLOLayer.__new__(GaussianYOLOLayer))
    with pytest.raises(DarknetError, match=r"x.cfg:9 \[region\]: training loss is not implemented"):
        head_loss(RegionLayer(3, 1, ((1, 1), (2, 2), (3, 3)), False), "x.cfg:9 [region]")


def test_compute_loss_names_the_untrainable_head():
    model = Darknet(type_sections(parse_cfg_text(REGION_CFG, "r.cfg")))
    with pytest.raises(DarknetError, match=r"r.cfg:9 \[region\]"):
        model.compute_loss(torch.zeros(1, 3, 32, 32), torch.zeros(0, 6))


def test_heads_do_not_import_their_losses():
    for module in (yolo, region):
        imported = {node.module for node in ast.walk(ast.parse(Path(module.__file__).read_text()))
                    if isinstance(node, ast.ImportFrom)}
        assert not any(name.endswith("_loss") or name.endswith(".losses") for name in imported), module.__name__
