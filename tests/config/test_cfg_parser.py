"""cfg parsing: typed values with Darknet's defaults, and errors that name file, line, section and key."""
from __future__ import annotations

import logging
import math

import pytest
import torch

from darknet_torch import CfgError, Darknet
from darknet_torch.errors import UnsupportedCfgError
from darknet_torch.config import load_cfg, parse_cfg_text, type_sections

NET = "[net]\nwidth=32\nheight=32\nchannels=3\n"


def _sections(text: str, path: str = "t.cfg"):
    return type_sections(parse_cfg_text(text, path))


def test_values_are_typed_and_defaults_are_darknets():
    net, conv, yolo = _sections(NET + "[convolutional]\nfilters=18\nsize = 3\npad=0\n"
                                "[yolo]\nmask=0,1,2\nanchors=1,2, 3,4, 5,6,\nclasses=1\nscale_x_y=1.05\n")
    assert net["batch"] == 1 and net["flip"] is True and net["policy"] == "constant" and net["letter_box"] is False
    assert conv["filters"] == 18 and conv["size"] == 3 and conv["pad"] is False
    assert conv["activation"] == "logistic"  # Darknet's default for [convolutional]
    assert conv["batch_normalize"] == 0 and conv["stride"] == 1
    assert yolo["mask"] == [0, 1, 2] and yolo["anchors"] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert yolo["ignore_thresh"] == 0.5 and yolo["truth_thresh"] == 1.0 and yolo["iou_normalizer"] == 0.75
    assert yolo["max_delta"] == math.inf and yolo["nms_kind"] == "default" and yolo["beta_nms"] == 0.6
    assert conv.where("size") == "t.cfg:7 [convolutional] size"


def test_flag_zero_is_false_not_true():
    _, conv = _sections(NET + "[convolutional]\nbatch_normalize=0\npad=0\nactivation=leaky\n")
    assert conv["pad"] is False


def test_bad_value_names_file_line_section_key():
    with pytest.raises(CfgError, match=r"t.cfg:6 \[convolutional\] filters: filters='abc' is not an integer"):
        _sections(NET + "[convolutional]\nfilters=abc\n")


def test_flag_must_be_0_or_1():
    with pytest.raises(CfgError, match=r"pad: pad='2' is not 0 or 1"):
        _sections(NET + "[convolutional]\npad=2\n")


def test_unknown_section_is_an_error():
    with pytest.raises(CfgError, match=r"t.cfg:5 \[convolutionnal\]: unknown section"):
        _sections(NET + "[convolutionnal]\n")


def test_unsupported_darknet_section_is_named():
    with pytest.raises(CfgError, match=r"\[lstm\] is not supported"):
        _sections(NET + "[lstm]\noutput=3\n")


def test_unknown_key_is_reported_once_with_its_line(caplog):
    with caplog.at_level(logging.WARNING):
        _sections(NET + "[convolutional]\nfilterz=3\n[convolutional]\nfilterz=4\n")
    messages = [r.getMessage() for r in caplog.records if "filterz" in r.getMessage()]
    assert len(messages) == 1 and "t.cfg:6 [convolutional] filterz" in messages[0]


def test_missing_required_key_names_the_section():
    with pytest.raises(CfgError, match=r"t.cfg:5 \[route\]: missing required key layers="):
        _sections(NET + "[route]\ngroups=1\n")


def test_option_before_any_section_and_garbage_line():
    with pytest.raises(CfgError, match=r"t.cfg:1: option 'width=3' appears before the first"):
        _sections("width=3\n" + NET)
    with pytest.raises(CfgError, match=r"t.cfg:5: cannot parse 'filters'"):
        _sections(NET + "filters\n")


def test_first_section_must_be_net():
    with pytest.raises(CfgError, match=r"the first section must be \[net\]"):
        _sections("[convolutional]\nfilters=1\n")


def test_comments_aliases_and_first_duplicate_wins():
    net, conv, pool = _sections("# c\n" + NET + "; another comment\n[conv]\nfilters=2 # two\nfilters=3\n[max]\n")
    assert conv.name == "convolutional" and conv["filters"] == 2 and pool.name == "maxpool"


def _build(tmp_path, text):
    path = tmp_path / "net.cfg"
    path.write_text(NET + text)
    return Darknet(path)


def test_route_pointing_forward_is_an_error(tmp_path):
    with pytest.raises(CfgError, match=r"net.cfg:8 \[route\] layers: layers=2 refers to layer 2, but layer 1 can only "
                                       r"use layers 0..0"):
        _build(tmp_path, "[convolutional]\nfilters=2\n[route]\nlayers=2\n[convolutional]\nfilters=2\n")


def test_head_filters_mismatch_says_what_to_set(tmp_path):
    with pytest.raises(CfgError, match=r"has 20 filters but classes=2 with 3 masked anchors needs 21; set filters=21"):
        _build(tmp_path, "[convolutional]\nfilters=20\n[yolo]\nmask=0,1,2\nanchors=1,1,2,2,3,3\nclasses=2\nnum=3\n")


def test_mask_beyond_num_is_an_error(tmp_path):
    with pytest.raises(CfgError, match=r"mask refers to anchors \[3\] but num=3"):
        _build(tmp_path, "[convolutional]\nfilters=21\n[yolo]\nmask=1,2,3\nanchors=1,1,2,2,3,3\nclasses=2\nnum=3\n")


def test_unknown_activation_and_route_shape_mismatch(tmp_path):
    with pytest.raises(CfgError, match=r"\[convolutional\] activation: unknown activation 'leakyy'"):
        _build(tmp_path, "[convolutional]\nfilters=2\nactivation=leakyy\n")
    with pytest.raises(CfgError, match="route inputs must share width and height"):
        _build(tmp_path, "[convolutional]\nfilters=2\n[maxpool]\nsize=2\nstride=2\n[route]\nlayers=0,1\n")


# The official cfgs in ../shared/darknet/cfg that darknet_torch refuses, with the refusal's reason; every other one
# builds.  README "Supported cfg sections" reports this count: update both together.
OFFICIAL_REFUSALS = {"yolov3-tiny_occlusion_track.cfg": "crnn", "yolo9000.cfg": "tree", "yolov3-tiny_xnor.cfg": "xnor",
                     "tiny-yolo_xnor.cfg": "xnor", "cspx-p7-mish.cfg": "mask"}
OFFICIAL_BUILT = 46


def test_every_official_cfg_builds_or_is_a_named_refusal(official_cfg_dir):
    def build(path):
        sections = load_cfg(path)
        sections[0].values.update(width=256, height=256)  # deep nets (p6, p7) need 256
        with torch.device("meta"):  # shapes and modules only: no memory for the weights
            return Darknet(sections), len(sections) - 1

    built, refused = 0, {}
    for path in sorted(official_cfg_dir.glob("*.cfg")):
        try:
            model, count = build(path)
        except UnsupportedCfgError as exc:
            refused[path.name] = exc.reason
            continue
        assert len(model.module_list) == count, path.name
        built += 1
    assert refused == OFFICIAL_REFUSALS
    assert built == OFFICIAL_BUILT


@pytest.mark.parametrize("section,key", [("route", "layers"), ("shortcut", "from")])
def test_empty_layer_reference_names_file_line_section_key(section, key):
    """``layers=`` / ``from=`` with no value used to be an IndexError ([route]) or a shortcut that adds nothing."""
    with pytest.raises(CfgError, match=rf"t.cfg:8 \[{section}\] {key}: {key}= is empty"):
        _sections(NET + f"[convolutional]\nfilters=4\n[{section}]\n{key}=\n")


@pytest.mark.parametrize("section,line,reason", [
    ("[convolutional]\nfilters=1_6", "filters='1_6' is not an integer", "no '_' separators"),
    ("[convolutional]\nfilters=\u0663", "filters='\u0663' is not an integer", "use ASCII digits"),
    ("[yolo]\nignore_thresh=nan", "ignore_thresh='nan' is not a number", "nan and inf are not allowed"),
    ("[yolo]\nignore_thresh=-inf", "ignore_thresh='-inf' is not a number", "nan and inf are not allowed"),
    ("[yolo]\nignore_thresh=1e999", "ignore_thresh='1e999' is not a number", "overflows to infinity"),
    ("[yolo]\nanchors=10,14,nan,27", "anchors='10,14,nan,27' is not a comma-separated list of numbers", "nan"),
    ("[yolo]\nmask=0,1_0", "mask='0,1_0' is not a comma-separated list of integers", "no '_' separators"),
])
def test_numbers_python_reads_but_darknet_would_not_are_refused_with_location(section, line, reason):
    """int()/float() accept '1_6' (atoi: 1), non-ASCII digits (atoi: 0) and nan/inf: refused, file:line:key named."""
    name = section.split("]")[0] + "]"
    with pytest.raises(CfgError, match=rf"t.cfg:6 \{name[:-1]}\] {line.split('=')[0]}: ") as info:
        _sections(NET + section + "\n")
    assert line in str(info.value) and reason in str(info.value)


def test_plain_numbers_keep_darknets_meaning():
    _, conv, yolo = _sections(NET + "[convolutional]\nfilters=+4\n[yolo]\nignore_thresh=.5\njitter=3.\n"
                              "iou_normalizer=7.5e-2\nanchors=1,2,3,4\n")
    assert conv["filters"] == 4
    assert (yolo["ignore_thresh"], yolo["jitter"], yolo["iou_normalizer"]) == (0.5, 3.0, 0.075)


def test_a_binary_file_given_as_cfg_gives_a_short_error(tmp_path):
    """Quoted lines, values and names are capped at 60 characters: the message stays one short line."""
    path = tmp_path / "yolov4.weights"
    path.write_bytes(bytes(range(256)) * 64)
    with pytest.raises(CfgError) as info:
        load_cfg(path)
    assert str(info.value).startswith(f"{path}:") and len(str(info.value)) < len(str(path)) + 200


@pytest.mark.parametrize("text,expected", [
    ("filters=" + "x" * 500, "filters='" + "x" * 60 + "'... (500 characters) is not an integer"),
    ("garbage" * 100, "cannot parse '" + ("garbage" * 9)[:60] + "'... (700 characters)"),
], ids=["value", "line"])
def test_long_cfg_lines_are_quoted_with_an_ellipsis(text, expected):
    with pytest.raises(CfgError) as info:
        _sections(NET + "[convolutional]\n" + text + "\n")
    assert expected in str(info.value) and len(str(info.value)) < 200


def test_long_unknown_section_and_key_names_are_clipped(caplog):
    with pytest.raises(CfgError) as info:
        _sections(NET + "[" + "s" * 300 + "]\n")
    assert "[" + "s" * 60 + "...]: unknown section" in str(info.value) and len(str(info.value)) < 1000
    with caplog.at_level(logging.WARNING):
        _sections(NET + "[convolutional]\n" + "k" * 300 + "=1\n")
    assert "k" * 60 + "..." in caplog.text and "k" * 61 not in caplog.text
