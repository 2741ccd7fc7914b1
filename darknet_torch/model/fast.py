"""Inference-only speed-ups of a :class:`Darknet` model: an exact mode and opt-in faster, less exact ones.

``optimize_for_inference(model, mode)`` returns a *copy* of the model (the original is untouched) that keeps the
forward contract (float ``B x 3 x H x W`` in, float32 ``B x N x (5+C)`` out) and the attributes the detection code
reads (``net``, ``stride``, ``heads``, ``head_grids``, ``num_classes``), so it drops into
:class:`~darknet_torch.detect.predictor.Predictor` and :func:`~darknet_torch.evaluate.runner.evaluate`.

Modes (the benchmark ``benchmarks/bench_inference.py`` reports each one's speed and coco128 mAP change):

* ``exact``: batch norm folded (Darknet's ``fuse_conv_batchnorm``), kernels and activations in channels-last
  (NHWC) memory, which oneDNN convolves without re-ordering every layer, and leaky/relu/linear activations fused into
  the convolution (oneDNN post-op; the same formula, so exact), kernels laid out once in oneDNN's blocked format
  (on the CPU).  Outputs differ from the eager model only by float32
  summation order (about 1e-6 relative).
* ``bf16``: as ``exact`` with kernels and feature maps in bfloat16 (native on CPUs with AVX512-BF16/AMX); the
  heads decode in float32.  Boxes move by ~0.5 % of their size.
* ``int8``: per-channel int8 kernels and per-tensor uint8 activations (static, calibrated on ``calibration``
  images: their per-layer minimum/maximum), run by PyTorch's x86 quantized engine (VNNI); the first convolution and
  the convolutions that feed a head stay float32 (their inputs/outputs are the most sensitive).
* ``compile``: the ``exact`` network compiled by ``torch.compile`` (Inductor, weights frozen): fused kernels;
  the first call per input shape compiles (tens of seconds).
"""
from __future__ import annotations

import copy
import warnings
from collections.abc import Iterable
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from darknet_torch.errors import DarknetError
from darknet_torch.model.darknet import Darknet
from darknet_torch.model.layers.conv import ConvBlock
from darknet_torch.runtime import BFLOAT16_CPUS, model_device, native_bfloat16

FAST_MODES = ("exact", "bf16", "int8", "compile")
AUTO = "auto"
"""The default of detect, demo and serve (:func:`auto_mode`): ``exact`` where it is measured faster, else the plain
model."""
NONE = "none"
"""The commands' spelling of the plain model (``InferenceSettings.fast`` None)."""
FAST_CHOICES = (AUTO, NONE, *FAST_MODES)
"""What ``--fast`` takes."""

# Activations oneDNN can apply inside the convolution with exactly Darknet's formula: (post-op name, scalars).
_FUSIBLE = {"linear": ("none", []), "relu": ("relu", []), "leaky": ("leaky_relu", [0.1])}


def optimize_for_inference(model: Darknet, mode: str = "exact",
                           calibration: Iterable[Tensor] | None = None) -> nn.Module:
    """An inference-only copy of ``model`` (eval mode, BN folded) running in ``mode`` (one of :data:`FAST_MODES`).

    ``calibration``: network inputs (``B x 3 x H x W`` batches, as the model takes them) whose per-layer value
    ranges set the int8 activation scales; required for ``int8`` and ignored otherwise.  Use images like the ones you
    will detect on, and not your evaluation set.  The result is meant for ``torch.inference_mode()``; it has no
    training path.

    Raises:
        DarknetError: unknown mode, ``int8`` without calibration data or on a non-CPU model, ``bf16`` on a device
            without native bfloat16 convolutions (:func:`~darknet_torch.runtime.native_bfloat16`).
    """
    if mode not in FAST_MODES:
        raise DarknetError(f"unknown fast mode {mode!r}; choose one of {', '.join(FAST_MODES)}")
    if mode == "bf16":
        _require_bfloat16(model_device(model))
    if mode == "int8":
        if calibration is None:
            raise DarknetError("fast mode int8 needs calibration images (e.g. a few of the images you will detect on)")
        fast = _inference_copy(model, copy_convs=True)  # calibration runs the copied blocks
        _quantize(fast, calibration)
        return fast
    fast = _inference_copy(model, copy_convs=False)
    dtype = torch.bfloat16 if mode == "bf16" else torch.float32
    fuse_activations = mode != "compile"  # Inductor fuses by itself and cannot trace the oneDNN post-op call
    for index, module in enumerate(model.module_list):
        if isinstance(module, ConvBlock):
            fast.module_list[index] = FastConv(module, dtype, fuse_activations)
    fast.eval()  # the new layers too
    if mode == "compile":
        return torch.compile(fast, dynamic=False, options={"freezing": True})
    return fast


def auto_mode(device: torch.device) -> str | None:
    """What :data:`AUTO` runs on ``device``: ``exact`` on an x86 CPU (AVX2 or AVX-512) with oneDNN's fused
    convolutions, where it was measured faster with the plain model's values within float32 summation order
    (benchmarks/README.md, "detect, demo and serve run exact": yolov3-tiny at 416 on 2 AVX2 cores 39.8 vs 53.0 ms
    quiet, 102.7 vs 124.7 ms beside 2 busy processes); else None, the plain model (unmeasured: GPUs, where
    channels-last float32 may not pay, and other CPUs; without oneDNN's post-ops ``exact`` would only add a copy)."""
    measured = device.type == "cpu" and torch.backends.cpu.get_cpu_capability().startswith("AVX")
    return "exact" if measured and _onednn_pointwise_available() else None


def _inference_copy(model: Darknet, copy_convs: bool) -> Darknet:
    """An eval-mode copy of ``model`` whose parameters require no gradients.

    With ``copy_convs`` its ``[convolutional]`` layers are copied and their batch norm folded (int8 calibrates on
    them); without, they are placeholders (``nn.Identity``) for the caller to replace with kernels made from the
    original's layers: copies of those would only be thrown away, and at start they doubled the memory of the weights
    (yolov4: peak RSS 1.24 GB instead of 1.05)."""
    placeholders = {} if copy_convs else {id(m): nn.Identity() for m in model.module_list if isinstance(m, ConvBlock)}
    fast = copy.deepcopy(model, placeholders).eval()
    if copy_convs:
        fast.fuse()
    for param in fast.parameters():
        param.requires_grad_(False)
    return fast


class FastConv(nn.Module):
    """A folded ``[convolutional]`` layer in channels-last memory and ``dtype``, activation fused when exact."""

    def __init__(self, block: ConvBlock, dtype: torch.dtype = torch.float32, fuse_activation: bool = True) -> None:
        super().__init__()
        weight, bias = block.folded()
        c = block.conv
        self.dtype = dtype
        # copies (copy=True: one, whatever the dtype), never views of the block's parameters: changing the original
        # cannot change this copy
        self.weight = nn.Parameter(weight.to(dtype, memory_format=torch.channels_last, copy=True), requires_grad=False)
        self.bias = nn.Parameter(bias.to(dtype, copy=True), requires_grad=False)
        self.stride, self.padding, self.dilation, self.groups = c.stride, c.padding, c.dilation, c.groups
        self.post_op = _FUSIBLE.get(block.act.name) if fuse_activation and _onednn_pointwise_available() else None
        self.act = copy.deepcopy(block.act)  # a module of its own (the original's stays the original's)
        self._blocked_weight: Tensor | None = None
        self._blocked_from: tuple[int, int] | None = None  # (data_ptr, version) of the kernel it was laid out from

    def forward(self, x: Tensor) -> Tensor:
        if x.dtype != self.dtype:
            x = x.to(self.dtype)
        x = x.contiguous(memory_format=torch.channels_last)  # no copy when it already is
        if self.post_op is not None and x.device.type == "cpu":
            name, scalars = self.post_op
            return torch.ops.mkldnn._convolution_pointwise(x, self._onednn_weight(x), self.bias, list(self.padding),
                                                           list(self.stride), list(self.dilation), self.groups,
                                                           name, scalars, "")
        return self.act(F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups))

    def _onednn_weight(self, x: Tensor) -> Tensor:
        """The kernel in the blocked layout oneDNN chooses for ``x``'s size, laid out on the first call and kept.

        Given the plain kernel, oneDNN re-lays it out on every call: measured 5 ms of yolov3-tiny's 50 ms forward at
        416 (AVX2, 2 threads).  Later inputs of another size still compute the same sums; oneDNN then re-lays the
        kept kernel out if its choice differs.  A kernel replaced or changed in place is laid out again.  float32
        only (a bfloat16 kernel is passed as it is).
        """
        if self.dtype != torch.float32:
            return self.weight
        source = (self.weight.data_ptr(), 0 if self.weight.is_inference() else self.weight._version)
        if self._blocked_weight is None or self._blocked_from != source:
            self._blocked_weight = torch.ops.mkldnn._reorder_convolution_weight(
                self.weight.contiguous(), list(self.padding), list(self.stride), list(self.dilation), self.groups,
                list(x.shape))
            self._blocked_from = source
        return self._blocked_weight

    def __getstate__(self) -> dict:
        """Copies and pickles lay the kernel out again on their first call (oneDNN's blocked tensor has no storage
        to copy)."""
        state = super().__getstate__()
        return {**state, "_blocked_weight": None}

    def extra_repr(self) -> str:
        fused = f", fused={self.post_op[0]}" if self.post_op else ""
        return f"{tuple(self.weight.shape)}, dtype={self.dtype}, channels_last{fused}"


def _require_bfloat16(device: torch.device) -> None:
    if native_bfloat16(device):
        return
    if device.type == "cpu":
        what, instead = f"cpu ({torch.backends.cpu.get_cpu_capability()})", "--fast exact (float32) or int8"
    elif device.type == "cuda":
        what, instead = f"GPU (compute capability {torch.cuda.get_device_capability(device)})", "--fast exact (float32)"
    else:
        what, instead = str(device), "--fast exact (float32)"
    raise DarknetError(f"fast mode bf16 needs bfloat16 convolution kernels (a CPU with {BFLOAT16_CPUS}, or an "
                       f"Ampere or later GPU); this {what} has none: use {instead}")


def _onednn_pointwise_available() -> bool:
    return (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")
            and hasattr(torch.ops.mkldnn, "_reorder_convolution_weight"))


# ----------------------------------------------------------------------------------------------------------- int8
class Int8Conv(nn.Module):
    """A folded ``[convolutional]`` layer in int8: input quantized with a calibrated per-tensor scale, per-channel
    int8 kernel, float32 output (dequantized), then the activation in float32."""

    def __init__(self, block: ConvBlock, in_range: tuple[float, float], out_range: tuple[float, float]) -> None:
        super().__init__()
        weight, bias = block.folded()
        c = block.conv
        self.in_scale, self.in_zero = _affine_uint8(*in_range)
        out_scale, out_zero = _affine_uint8(*out_range)
        scales = weight.abs().amax(dim=(1, 2, 3)).clamp_min(1e-8) / 127
        with _quantized_tensors():
            qweight = torch.quantize_per_channel(weight.float(), scales, torch.zeros_like(scales, dtype=torch.long),
                                                 0, torch.qint8)
        self.conv = torch.ao.nn.quantized.Conv2d(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding,
                                                 c.dilation, c.groups, bias=True)
        self.conv.set_weight_bias(qweight, bias.float())
        self.conv.scale, self.conv.zero_point = out_scale, out_zero
        self.act = block.act
        # Predictor reads the device from the model's parameters; keep one (the float bias) visible.
        self.bias = nn.Parameter(bias.float(), requires_grad=False)

    def forward(self, x: Tensor) -> Tensor:
        with _quantized_tensors():
            q = torch.quantize_per_tensor(x.float().contiguous(memory_format=torch.channels_last), self.in_scale,
                                          self.in_zero, torch.quint8)
        return self.act(self.conv(q).dequantize())


@contextmanager
def _quantized_tensors():
    """torch >= 2.13 deprecates quantized tensors (their successor is torchao's PT2E flow, which needs
    torch.compile); they still run VNNI kernels, so silence the notice where we create them."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
        yield


def _affine_uint8(low: float, high: float) -> tuple[float, int]:
    """Scale and zero point mapping [min(low, 0), max(high, 0)] onto 0..255."""
    low, high = min(low, 0.0), max(high, 0.0)
    scale = max(high - low, 1e-8) / 255
    return scale, int(round(-low / scale))


@torch.inference_mode()
def _quantize(model: Darknet, calibration: Iterable[Tensor]) -> None:
    """Calibrate the value range around every convolution on ``calibration``, then swap in :class:`Int8Conv`."""
    convs = {i: m for i, m in enumerate(model.module_list) if isinstance(m, ConvBlock)}
    ranges: dict[int, list[float]] = {}

    def observe(index: int):
        def hook(module: nn.Module, args: tuple[Tensor], output: Tensor) -> None:
            conv_out = module.conv(args[0]) if module.fused is None else F.conv2d(
                args[0], *module.fused, module.conv.stride, module.conv.padding, module.conv.dilation,
                module.conv.groups)
            seen = [args[0].min(), args[0].max(), conv_out.min(), conv_out.max()]
            old = ranges.get(index)
            values = [float(v) for v in seen]
            ranges[index] = values if old is None else [min(old[0], values[0]), max(old[1], values[1]),
                                                          min(old[2], values[2]), max(old[3], values[3])]
        return hook

    handles = [m.register_forward_hook(observe(i)) for i, m in convs.items()]
    try:
        batches = 0
        for batch in calibration:
            model(batch)
            batches += 1
    finally:
        for handle in handles:
            handle.remove()
    if not batches:
        raise DarknetError("fast mode int8: the calibration set is empty")
    feeds_head = {i - 1 for i in model.head_indices}
    first = min(convs)
    for index, block in convs.items():
        if index == first or index in feeds_head or block.conv.groups != 1 or index not in ranges:
            model.module_list[index] = FastConv(block)
        else:
            low_in, high_in, low_out, high_out = ranges[index]
            model.module_list[index] = Int8Conv(block, (low_in, high_in), (low_out, high_out))
