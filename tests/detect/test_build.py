"""build_predictor (darknet_torch/detect/build.py): one setup for every command."""
from __future__ import annotations

import pytest
import torch

from darknet_torch.detect.build import build_predictor, load_for_inference, optimize
from darknet_torch.detect.settings import DETECTOR_MAP, DETECTOR_TEST
from darknet_torch.errors import CfgError, DarknetError
from darknet_torch.model.darknet import Darknet
from darknet_torch.model.fast import FastConv, auto_mode


@pytest.fixture(scope="module")
def tiny(golden_dir, real_weights) -> Darknet:
    return Darknet(golden_dir / "real" / "yolov3-tiny_mask123.cfg").load_darknet_weights(real_weights).eval()


def test_settings_are_resolved_from_the_cfg(tiny):
    predictor = build_predictor(tiny)
    assert predictor.model is tiny  # no fast mode: the model itself
    assert (predictor.thresh, predictor.nms_thresh) == (0.25, 0.45)
    assert predictor.nms_kind == tiny.heads[-1].config.nms_kind
    assert predictor.letterbox is bool(tiny.hyperparams["letter_box"]) is False
    assert predictor.input_size == tiny.input_size == (416, 416)
    assert predictor.names == [str(i) for i in range(80)]
    mapping = build_predictor(tiny, DETECTOR_MAP.replace(letterbox=True, input_size=(320, 608)))
    assert (mapping.thresh, mapping.letterbox, mapping.input_size) == (0.005, True, (320, 608))


def test_loads_from_files(golden_dir, real_weights):
    predictor = build_predictor(golden_dir / "real" / "yolov3-tiny_mask123.cfg", weights=real_weights, device="cpu")
    assert predictor.model.seen == 32013312


def test_input_size_must_fit_the_stride(tiny):
    assert tiny.stride == 32
    with pytest.raises(CfgError, match="multiples of 32"):
        build_predictor(tiny, DETECTOR_TEST.replace(input_size=(100, 416)))


def test_with_settings_shares_the_model_and_keeps_the_fast_mode(tiny):
    predictor = build_predictor(tiny)
    tuned = predictor.with_settings(thresh=0.5, letterbox=True)
    assert tuned.model is predictor.model and (tuned.thresh, tuned.letterbox) == (0.5, True)
    assert (predictor.thresh, predictor.letterbox) == (0.25, False)
    with pytest.raises(ValueError, match="fast mode"):
        predictor.with_settings(fast="bf16")


def test_int8_calibrates_on_readable_images(tiny, repo_root, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    with pytest.raises(DarknetError, match="no readable image"):
        optimize(tiny, DETECTOR_TEST.replace(fast="int8"), [broken])
    fast = optimize(tiny, DETECTOR_TEST.replace(fast="int8"),
                    [broken, *sorted((repo_root / "data" / "samples").glob("*.jpg"))])
    assert any(type(m).__name__ == "Int8Conv" for m in fast.module_list)


@pytest.mark.skipif(auto_mode(torch.device("cpu")) != "exact", reason="auto runs the plain model on this CPU (no "
                    "x86 AVX2/AVX-512 with oneDNN's fused convolutions; test below)")
def test_auto_runs_exact_on_the_cpu_and_the_predictor_names_it(tiny):
    predictor = build_predictor(tiny, DETECTOR_TEST.replace(fast="auto"))
    assert predictor.settings.fast == "exact" and predictor.model is not tiny
    assert any(isinstance(m, FastConv) for m in predictor.model.module_list)
    assert isinstance(optimize(tiny, DETECTOR_TEST.replace(fast="auto")).module_list[0], FastConv)
    plain = build_predictor(tiny, DETECTOR_TEST.replace(fast=None))
    assert plain.model is tiny and plain.settings.fast is None


@pytest.mark.parametrize("device, capability, onednn, mode", [
    ("cpu", "AVX2", True, "exact"),
    ("cpu", "AVX512", True, "exact"),
    ("cpu", "AVX2", False, None),  # no oneDNN post-ops: exact would only add a copy
    ("cpu", "DEFAULT", True, None),  # a CPU it was not measured on (e.g. aarch64)
    ("cuda", "AVX2", True, None),  # channels-last float32 on a GPU: unmeasured
])
def test_auto_runs_exact_only_where_it_was_measured(device, capability, onednn, mode, tiny, monkeypatch):
    from darknet_torch.model import fast
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    monkeypatch.setattr(fast, "_onednn_pointwise_available", lambda: onednn)
    assert auto_mode(torch.device(device)) == mode
    if device == "cpu" and mode is None:
        predictor = build_predictor(tiny, DETECTOR_TEST.replace(fast="auto"))
        assert predictor.model is tiny and predictor.settings.fast is None


@pytest.mark.parametrize("fast, folded", [("auto", None), (None, True), ("int8", False)])
def test_commands_load_unfolded_when_a_fast_mode_makes_its_own_kernels(fast, folded, golden_dir, real_weights,
                                                                       caplog):
    from darknet_torch.model.layers.conv import ConvBlock
    cfg = golden_dir / "real" / "yolov3-tiny_mask123.cfg"
    with caplog.at_level("INFO", logger="darknet_torch.detect.build"):
        model, settings = load_for_inference(cfg, real_weights, torch.device("cpu"), DETECTOR_TEST.replace(fast=fast))
    assert settings.fast == (auto_mode(torch.device("cpu")) if fast == "auto" else fast)
    said = [r.getMessage() for r in caplog.records if r.name == "darknet_torch.detect.build"]
    assert said == ([f"--fast auto on cpu: fast mode {settings.fast} (--fast none for the plain model)"
                     if settings.fast else "--fast auto on cpu: the plain model"] if fast == "auto" else [])
    folded = settings.fast is None if folded is None else folded  # auto: folded only if it runs the plain model
    blocks = [m for m in model.module_list if isinstance(m, ConvBlock)]
    assert blocks and all((block.fused is not None) is folded for block in blocks)
    assert model.seen == 32013312 and not model.training


def test_a_grayscale_cfg_is_refused_naming_the_channels_line(tmp_path):
    """detect/demo/serve/map feed RGB: a [net] channels=1 model used to fail on every image inside the first conv."""
    cfg = tmp_path / "gray.cfg"
    cfg.write_text("[net]\nwidth=32\nheight=32\nchannels=1\n[convolutional]\nfilters=6\nsize=1\n"
                   "[yolo]\nmask=0\nanchors=10,14\nclasses=1\nnum=1\n")
    with pytest.raises(CfgError, match=r"gray.cfg:4 \[net\] channels: channels=1: inference feeds"):
        build_predictor(cfg, DETECTOR_TEST.replace(fast=None), device="cpu")
