"""Darknet's single-dash flags translated into a command's own options, or ignored with a note."""
from __future__ import annotations

import pytest
import torch

from darknet_torch.cli.darknet_flags import gpu_device, is_darknet_word, translate_flags

# option -> takes a value
DETECT_OPTIONS = {"--thresh": True, "--ext-output": False, "--save-labels": False, "--letter-box": False,
                  "--json": True, "--device": True, "--output": True}


def test_known_flags_become_the_commands_options(capsys):
    tokens = ["img.jpg", "-ext_output", "-thresh", "0.3", "-dont_show", "-save_labels", "-letter_box",
              "-out", "r.json", "--output", "-odd_dir_name_kept"]
    assert translate_flags(tokens, DETECT_OPTIONS) == [
        "img.jpg", "--ext-output", "--thresh", "0.3", "--save-labels", "--letter-box", "--json", "r.json",
        "--output", "-odd_dir_name_kept"]
    assert capsys.readouterr().err == ""  # -dont_show is what we always do: no note


def test_flags_the_command_lacks_are_ignored_with_their_value(capsys):
    tokens = ["-hier", "0.5", "-mjpeg_port", "8090", "-show_imgs", "x.jpg", "-unknown_flag", "3", "-map"]
    assert translate_flags(tokens, {"--thresh": True}) == ["x.jpg"]
    assert capsys.readouterr().err.splitlines() == [
        "note: ignoring Darknet flag -hier 0.5 (not supported)",
        "note: ignoring Darknet flag -mjpeg_port 8090 (not supported)",
        "note: ignoring Darknet flag -show_imgs (not supported)",
        "note: ignoring Darknet flag -unknown_flag 3 (not supported)",
        "note: ignoring Darknet flag -map (not supported)",
    ]


def test_spellings_the_command_knows_pass_unchanged():
    assert translate_flags(["-points", "11", "--thresh", "-0.5"], {"-points": True, "--thresh": True}) == [
        "-points", "11", "--thresh", "-0.5"]


@pytest.mark.parametrize("token, expected", [("-ext_output", True), ("-i", True), ("-c", True), ("--thresh", False),
                                             ("-x", False), ("-1", False), ("-0.5", False), ("img.jpg", False)])
def test_what_counts_as_a_darknet_flag(token, expected):
    assert is_darknet_word(token) is expected


def test_gpu_index_picks_cuda_n_or_the_cpu(capsys):
    cuda = torch.cuda.is_available()
    assert gpu_device("1") == ("1" if cuda else "cpu")
    assert gpu_device("0,1") == ("0" if cuda else "cpu")
    assert "torchrun --nproc_per_node=2" in capsys.readouterr().err
    assert translate_flags(["-i", "0"], {"--device": True}) == ["--device", "0" if cuda else "cpu"]
