"""Fast inference modes (darknet_torch/model/fast.py) against the C Darknet's outputs (../shared/golden).

Tolerances:
* ``exact``: every dumped layer of the mini nets within 1e-4 * max|ref| and the real yolov3-tiny heads within 1e-4
  absolute (golden/README.md section 7, as the eager model); NMS survivors identical to Darknet's.
* ``bf16`` / ``int8`` (opt-in, approximate): every Darknet detection with probability >= 0.5 (``detector test`` at
  thresh 0.25, NMS 0.45) is found with the same class, IoU >= 0.95 (bf16) / 0.7 (int8) and probability within 0.1 /
  0.2.  Measured on the 8 real photos: bf16 IoU >= 0.988, |dprob| <= 0.032; int8 IoU >= 0.75, |dprob| <= 0.144.
  Their coco128 mAP change is measured by benchmarks/bench_eval.py.
``compile`` is not tested here (Inductor compiles for a minute); the benchmark checks its mAP.
"""
from __future__ import annotations

import copy
import numpy as np
import pytest
import torch

from darknet_torch import Darknet
from darknet_torch.data.images import LetterboxInfo, letterbox_geometry, load_image, preprocess
from darknet_torch.detect.postprocess import darknet_detections
from darknet_torch.detect.predictor import Predictor
from darknet_torch.errors import DarknetError
from darknet_torch.model.fast import FastConv, optimize_for_inference
from darknet_torch.model.heads import RegionLayer
from darknet_torch.model.layers.conv import ConvBlock
from darknet_torch.ops.boxes import box_iou
from darknet_torch.ops.nms import apply_nms
from darknet_torch.runtime import BFLOAT16_CPUS, native_bfloat16
from tests.golden import golden_runs, load_run

MINI = golden_runs("mini")
REAL = [p for p in golden_runs("real") if not p.name.endswith("all_layers")]
APPROXIMATE = {"bf16": (0.95, 0.1), "int8": (0.7, 0.2)}  # mode: (min IoU, max |probability change|)
#: bf16 runs only where the CPU has bfloat16 convolution kernels; elsewhere it is refused (tested on any CPU).
NEEDS_NATIVE_BF16 = pytest.mark.skipif(
    not native_bfloat16(torch.device("cpu")),
    reason=f"this CPU has no bfloat16 convolution kernels ({BFLOAT16_CPUS}): --fast bf16 is refused "
           "here (test_bf16_is_refused_without_native_bfloat16)")


def _info(run) -> LetterboxInfo:
    spec = run.index["detections"]["get_network_boxes"]
    net = run.index["net"]
    if spec["letter"]:
        return letterbox_geometry(spec["w"], spec["h"], net["w"], net["h"])
    return LetterboxInfo(spec["w"], spec["h"], net["w"], net["h"], net["w"], net["h"], 0, 0)


def _survivors(model: torch.nn.Module, run, thresh: float) -> tuple:
    """Darknet-style detections after do_nms_sort(0.45) of ``model`` on the run's input."""
    with torch.inference_mode():
        decoded = model(run.input())[0]
    dets = darknet_detections(decoded, model.head_grids(), [isinstance(h, RegionLayer) for h in model.heads],
                              _info(run), thresh)
    return dets, apply_nms(dets.boxes, dets.objectness, dets.probs, 0.45, "default")


@pytest.fixture(scope="module")
def tiny(golden_dir, real_weights) -> Darknet:
    """yolov3-tiny with the second head's mask 1,2,3 (the goldens' mask123 variant) and the real weights."""
    return Darknet(golden_dir / "real" / "yolov3-tiny_mask123.cfg").load_darknet_weights(real_weights).eval()


@pytest.fixture(scope="module")
def calibration(repo_root) -> list[torch.Tensor]:
    paths = sorted((repo_root / "data" / "samples").glob("*.jpg"))
    return [torch.stack([preprocess(load_image(p), 416, 416, letterbox=False)[0] for p in paths])]


@pytest.mark.parametrize("folder", MINI, ids=[p.name for p in MINI])
def test_exact_mode_every_mini_layer_matches_darknet(folder):
    run = load_run(folder)
    fast = optimize_for_inference(Darknet(run.cfg).load_darknet_weights(run.weights), "exact")
    with torch.inference_mode():
        outputs = fast.forward_layers(run.input())
    compared = 0
    for entry in run.index["layers"]:
        ref = run.layer(entry["index"])
        module, out = fast.module_list[entry["index"]], outputs[entry["index"]]
        if ref is None:
            continue
        ours = (module.darknet_layout(out) if isinstance(module, RegionLayer) else out).float().numpy().ravel()
        scale = float(np.abs(ref).max())
        assert float(np.abs(ours - ref).max()) <= 1e-4 * scale, f"layer {entry['index']} [{entry['type']}]"
        compared += 1
    assert compared >= len(fast.head_indices) > 0


@pytest.mark.parametrize("folder", REAL[:2], ids=[p.name for p in REAL[:2]])
def test_exact_mode_real_heads_and_survivors_match_darknet(folder, tiny):
    run = load_run(folder)
    fast = optimize_for_inference(tiny, "exact")
    assert any(isinstance(m, FastConv) for m in fast.module_list)
    with torch.inference_mode():
        heads = fast.head_outputs(run.input())
    # a head's activated map does not depend on its mask, so the shipped cfg's golden heads apply
    for index, head in zip(tiny.head_indices, heads):
        assert float(np.abs(head.numpy().ravel() - run.layer(index)).max()) <= 1e-4, f"layer {index}"
    _, probs = _survivors(fast, run, run.index["detections"]["get_network_boxes"]["thresh"])
    rows, classes = np.nonzero(probs.numpy())
    expected = run.dets("dets_post_nms.f32", folder / "mask123")
    assert {(int(r), int(c)) for r, c in zip(rows, classes)} == {(int(i), int(c)) for i, c, _ in expected}


def test_exact_convs_lay_their_kernels_out_once_and_sum_as_with_the_plain_kernels(tiny):
    fast = optimize_for_inference(tiny, "exact")
    convs = [m for m in fast.module_list if isinstance(m, FastConv)]
    if convs[0].post_op is None:
        pytest.skip("this torch has no oneDNN fused convolution: FastConv runs F.conv2d with the plain kernel")
    plain_kernels = copy.deepcopy(fast)
    for conv in plain_kernels.module_list:
        if isinstance(conv, FastConv):
            conv._onednn_weight = lambda x, conv=conv: conv.weight  # oneDNN re-lays it out on every call
    generator = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        fast(torch.rand(1, 3, 416, 416, generator=generator))
        kept = [conv._blocked_weight for conv in convs]
        assert all(k is not None and k.is_mkldnn for k in kept)
        for shape in [(1, 3, 416, 416), (2, 3, 320, 480)]:  # the size they were laid out for, and another
            x = torch.rand(*shape, generator=generator)
            assert torch.equal(fast(x), plain_kernels(x))
        assert all(conv._blocked_weight is k for conv, k in zip(convs, kept))
        copied = copy.deepcopy(fast)  # oneDNN's blocked tensor has no storage: a copy lays its kernels out again
    assert all(m._blocked_weight is None for m in copied.module_list if isinstance(m, FastConv))
    with torch.no_grad():
        convs[-1].weight.mul_(0.5)  # a kernel changed in place is laid out again
    with torch.inference_mode():
        x = torch.rand(1, 3, 416, 416, generator=generator)
        [m for m in plain_kernels.module_list if isinstance(m, FastConv)][-1].weight.mul_(0.5)
        assert torch.equal(fast(x), plain_kernels(x)) and convs[-1]._blocked_weight is not kept[-1]


@pytest.mark.parametrize("mode", [pytest.param("bf16", marks=NEEDS_NATIVE_BF16), "int8"])
def test_approximate_modes_find_darknets_confident_detections(mode, tiny, calibration):
    min_iou, max_prob_change = APPROXIMATE[mode]
    fast = optimize_for_inference(tiny, mode, calibration)
    checked = 0
    for folder in REAL:
        run = load_run(folder)
        pre = run.dets("dets_pre_nms.f32", folder / "mask123")
        dets, probs = _survivors(fast, run, 0.25)
        for index, cls, prob in run.dets("dets_post_nms.f32", folder / "mask123"):
            if prob < 0.5:
                continue
            same_class = probs[:, int(cls)] > 0
            assert same_class.any(), f"{folder.name}: class {int(cls)} lost"
            ious = box_iou(torch.from_numpy(pre[int(index), 1:5].copy())[None], dets.boxes[same_class])[0]
            best = int(ious.argmax())
            assert float(ious[best]) >= min_iou, f"{folder.name}: class {int(cls)} box IoU {float(ious[best]):.3f}"
            assert abs(float(probs[same_class][best, int(cls)]) - prob) <= max_prob_change
            checked += 1
    assert checked >= 15


@pytest.mark.parametrize("mode", ["exact", pytest.param("bf16", marks=NEEDS_NATIVE_BF16)])
def test_original_model_is_untouched_and_predictor_accepts_the_copy(mode, tiny, calibration):
    x = calibration[0][:1]
    with torch.inference_mode():
        before = tiny(x)
        fast = optimize_for_inference(tiny, mode)
        after = tiny(x)
        decoded = fast(x)
    assert torch.equal(before, after)
    assert all(isinstance(m, ConvBlock) for m in tiny.module_list if isinstance(m, (ConvBlock, FastConv)))
    assert decoded.dtype == torch.float32 and decoded.shape == before.shape
    info = LetterboxInfo(416, 416, 416, 416, 416, 416, 0, 0)
    assert len(Predictor(fast).detect_batch(x, [info])) == 1


def test_the_copy_shares_no_storage_or_module_with_the_original_and_replaces_every_conv(tiny):
    """The copy is built without copying the convolutions it replaces (memory at start); their new kernels are
    copies too, so training or reloading the original later cannot change the copy (yolov3-tiny's 1x1 head convs have
    no batch norm: their folded kernel is the parameter itself)."""
    fast = optimize_for_inference(tiny, "exact")

    def storages(module):
        return {t.untyped_storage().data_ptr() for t in [*module.parameters(), *module.buffers()] if t.numel()}
    assert not storages(tiny) & storages(fast)
    assert not {id(m) for m in tiny.modules()} & {id(m) for m in fast.modules()}
    assert not any(m.training for m in fast.modules())
    for original, copied in zip(tiny.module_list, fast.module_list, strict=True):
        assert isinstance(copied, FastConv) if isinstance(original, ConvBlock) else type(copied) is type(original)


def test_the_convolutions_it_replaces_are_not_copied(tiny, monkeypatch):
    def refuse(self, memo):
        raise AssertionError("a replaced convolution was deep-copied")
    monkeypatch.setattr(ConvBlock, "__deepcopy__", refuse, raising=False)
    fast = optimize_for_inference(tiny, "exact")
    assert not any(isinstance(m, (ConvBlock, torch.nn.Identity)) for m in fast.module_list)
    with pytest.raises(AssertionError, match="deep-copied"):
        optimize_for_inference(tiny, "int8", calibration=[torch.rand(1, 3, 416, 416)])  # int8 calibrates on copies


@pytest.mark.slow
def test_exact_runs_every_official_detection_cfg_as_the_plain_model(official_cfg_dir):
    """detect/demo/serve run ``exact`` by default on the CPU: every official cfg with a detection head that builds
    (the minis above check the numbers against Darknet) gives every layer of the plain model within 1e-4 of that
    layer's largest value, on a 4x4 grid of its largest stride.  Each kernel is first scaled so that its layer's
    output has unit spread on this input (LSUV): with torch's default initialisation the activations fade through a
    hundred layers (the output is then nearly the last biases, which a broken middle layer would pass), and with
    He's they grow to ~1e5, where float32 rounding alone moves the heads' sigmoids."""
    from darknet_torch.errors import CfgError
    checked = []
    for cfg in sorted(official_cfg_dir.glob("*.cfg")):
        try:
            model = Darknet(cfg)
        except CfgError:  # refused at build (xnor, [crnn], tree, ...), plain or not: tests/config
            continue
        if not model.head_indices:
            continue
        x = torch.rand(1, 3, 4 * model.stride, 4 * model.stride, generator=torch.Generator().manual_seed(0))
        _unit_spread(model.eval(), x)
        model.fuse()
        fast = optimize_for_inference(model, "exact")
        with torch.inference_mode():
            plain_layers, fast_layers = model.forward_layers(x), fast.forward_layers(x)
        for index, (a, b) in enumerate(zip(plain_layers, fast_layers, strict=True)):
            scale = float(a.abs().max())
            assert scale > 1e-6, f"{cfg.name} layer {index}: activations died out; the comparison would be empty"
            error = float((a - b).abs().max())
            assert error <= 1e-4 * scale, f"{cfg.name} layer {index}: {error:.2g} vs largest value {scale:.2g}"
        checked.append(cfg.name)
    assert len(checked) >= 45 and {"yolov4-p6.cfg", "yolov7.cfg", "yolov4-csp-x-mish.cfg"} <= set(checked)


def _unit_spread(model: Darknet, x: torch.Tensor) -> None:
    """Scale every convolution's kernel, in forward order, so that its layer's output has standard deviation ~1 on
    ``x`` (layer-sequential unit variance)."""
    def rescale(block: ConvBlock, args: tuple[torch.Tensor], output: torch.Tensor) -> torch.Tensor:
        spread = float(output.std())
        if spread > 0:
            block.conv.weight.data /= spread
            output = block.forward(args[0])  # not block(...): that would run this hook again
        return output

    handles = [m.register_forward_hook(rescale) for m in model.modules() if isinstance(m, ConvBlock)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()


def test_bf16_is_refused_without_native_bfloat16(tiny, monkeypatch):
    """Without oneDNN's bfloat16 kernels the fused convolution refuses bfloat16 with a message about CPU flags, and
    torch's fallback is 8-30x slower than float32: the mode is refused up front, naming what to use instead."""
    monkeypatch.setattr("darknet_torch.model.fast.native_bfloat16", lambda device: False)
    with pytest.raises(DarknetError, match=r"bf16 needs bfloat16 convolution kernels .*use --fast exact"):
        optimize_for_inference(tiny, "bf16")
    assert isinstance(optimize_for_inference(tiny, "exact"), Darknet)


@pytest.mark.parametrize("onednn", [True, False])
def test_native_bfloat16_asks_onednn(onednn, monkeypatch):
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: onednn, raising=False)
    assert native_bfloat16(torch.device("cpu")) is onednn
    assert not native_bfloat16(torch.device("meta"))


@pytest.mark.parametrize("capability, native", [("AVX512", True), ("AVX512_BF16", True), ("AVX2", False)])
def test_native_bfloat16_without_onednns_answer_goes_by_the_cpu(capability, native, monkeypatch):
    def missing() -> bool:
        raise AttributeError("an older torch")
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", missing, raising=False)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    assert native_bfloat16(torch.device("cpu")) is native


@pytest.mark.parametrize("major, native", [(7, False), (8, True)])
def test_native_bfloat16_on_cuda_needs_ampere(major, native, monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (major, 0))
    assert native_bfloat16(torch.device("cuda:0")) is native


def test_bad_modes_are_refused(tiny):
    with pytest.raises(DarknetError, match="unknown fast mode"):
        optimize_for_inference(tiny, "fp8")
    with pytest.raises(DarknetError, match="calibration"):
        optimize_for_inference(tiny, "int8")
    with pytest.raises(DarknetError, match="empty"):
        optimize_for_inference(tiny, "int8", [])
