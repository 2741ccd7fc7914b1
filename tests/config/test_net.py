"""NetSettings: [net] read once, defaults only from the cfg schema, and the records built from it agree."""
from __future__ import annotations

import dataclasses

import pytest

from darknet_torch.config import parse_cfg_text, type_sections
from darknet_torch.config.net import NetSettings, schema_default
from darknet_torch.config.sections import SCHEMAS
from darknet_torch.data.augment import AugmentConfig
from darknet_torch.data.multiscale import MultiScale
from darknet_torch.errors import CfgError
from darknet_torch.train.schedule import LrSchedule

NET = """[net]
batch=64
subdivisions=16
width=416
height=320
channels=3
policy=steps
steps=400,450
scales=.1,.1
resize_step=64
mixup=3
letter_box=1
"""


def net_section(text: str = NET):
    return type_sections(parse_cfg_text(text, "n.cfg"))[0]


def test_values_are_the_typed_section_and_absent_keys_the_schema_defaults():
    section = net_section()
    net = NetSettings.of(section)
    assert (net.batch, net.subdivisions, net.mini_batch, net.input_size) == (64, 16, 4, (320, 416))
    assert (net.steps, net.scales, net.resize_step, net.mixup, net.letter_box) == ((400, 450), (0.1, 0.1), 64, 3, True)
    for spec in dataclasses.fields(NetSettings):
        if spec.name not in ("section", "steps", "scales", "resize_step") and not section.has(spec.name):
            assert getattr(net, spec.name) == SCHEMAS["net"][spec.name][1], spec.name
    assert NetSettings.of(net) is net
    with pytest.raises(dataclasses.FrozenInstanceError):
        net.batch = 1  # type: ignore[misc]


def test_a_mapping_reads_like_a_section_with_the_same_keys():
    values = {"batch": 64, "subdivisions": 16, "width": 416, "height": 320, "channels": 3, "policy": "steps",
              "steps": [400, 450], "scales": [0.1, 0.1], "resize_step": 64.0, "mixup": 3, "letter_box": True}
    assert NetSettings.of(values) == NetSettings.of(net_section())


def test_errors_name_the_cfg_line():
    net = NetSettings.of(net_section())
    assert str(net.error("bad", "subdivisions")) == "n.cfg:3 [net] subdivisions: bad"
    assert str(NetSettings.of({}).error("bad", "batch")) == "[net] batch: bad"
    assert isinstance(net.error("x"), CfgError)
    assert NetSettings.of({"subdivisions": 0}).mini_batch == 0


def test_records_built_from_net_take_their_defaults_from_the_schema():
    assert LrSchedule() == LrSchedule.from_net(NetSettings.of({}))
    assert AugmentConfig() == AugmentConfig.from_cfg(NetSettings.of({}), {})
    assert AugmentConfig().jitter == schema_default("jitter", "yolo") == schema_default("jitter", "region")
    assert MultiScale(416, 416).resize_step == schema_default("resize_step")
    net = NetSettings.of(net_section())
    assert LrSchedule.from_net(net).steps == (400, 450)
    assert AugmentConfig.from_cfg(net, {}).letter_box and not AugmentConfig.from_cfg(net, {}).mixup  # mixup=3
