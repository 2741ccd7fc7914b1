"""``summary``: Darknet's BFLOPs totals (golden/timing.txt prints them for the 416x416 networks)."""
from __future__ import annotations

import pytest

from darknet_torch.cli.main import main
from darknet_torch.cli.summary import summarize
from darknet_torch.config import load_cfg
from darknet_torch.model.darknet import Darknet

# Darknet's "Total BFLOPS" at 416x416, from ../shared/golden/timing.txt
DARKNET_BFLOPS = {"yolov3-tiny": 5.571, "yolov3": 65.879, "yolov4": 60.137, "yolov4-tiny": 6.910}


@pytest.mark.parametrize("name", sorted(DARKNET_BFLOPS))
def test_total_bflops_equal_darknets(name, official_cfg_dir):
    sections = load_cfg(official_cfg_dir / f"{name}.cfg")
    sections[0].values.update(width=416, height=416)
    total = sum(info.bflops for info in Darknet(sections).layer_infos)
    assert round(total, 3) == DARKNET_BFLOPS[name]


def test_summary_command_prints_layers_and_totals(repo_root, capsys):
    assert main(["summary", "--cfg", str(repo_root / "cfg" / "yolov3-tiny.cfg"), "--img-size", "416"]) == 0
    out = capsys.readouterr().out
    assert "Total BFLOPS 5.571" in out and "Total parameters 8,852,366" in out
    assert out.count("| yolo ") == 2


def test_summarize_lists_every_layer(official_cfg_dir):
    model = Darknet(official_cfg_dir / "yolov3-tiny.cfg")
    assert summarize(model).count("convolutional") == 13


def test_summary_img_size_height_width(repo_root, capsys):
    assert main(["summary", "--cfg", str(repo_root / "cfg" / "yolov3-tiny.cfg"), "--img-size", "320", "416"]) == 0
    assert "255x10x13" in capsys.readouterr().out  # the first head's grid: 320/32 x 416/32


@pytest.mark.parametrize("sizes, message", [
    (["320", "416", "608"], "--img-size: takes H or H W, got 3 values"),  # was: the third value ignored
    (["0"], "--img-size: must be >= 1, got 0"),
])
def test_summary_img_size_usage_errors(sizes, message, repo_root, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["summary", "--cfg", str(repo_root / "cfg" / "yolov3-tiny.cfg"), "--img-size", *sizes])
    assert exited.value.code == 2 and message in capsys.readouterr().err


def test_summary_img_size_not_a_multiple_of_the_stride(repo_root, capsys):
    assert main(["summary", "--cfg", str(repo_root / "cfg" / "yolov3-tiny.cfg"), "--img-size", "400"]) == 2
    err = capsys.readouterr().err
    assert err == "error: input size 400x400: height and width must be multiples of 32 (this network's stride)\n"
