"""ONNX export of a whole Darknet network, box decoding included, optionally with NMS in the graph.

The graph computes exactly ``Darknet.forward``: ``images`` (B x C x H x W, C the cfg's ``[net] channels``; RGB in
[0, 1] for 3) -> ``detections`` (B x N x (5+C): cx, cy, w, h in input pixels, objectness, class probabilities;
heads in cfg order, row ``anchor*H*W + row*W + col`` within a head).  Batch norm is folded first (Darknet's
``fuse_conv_batchnorm``).

Choices, and why:

* **Exporter**: the TorchScript-based one (``dynamo=False``).  torch >= 2.9 defaults to the torch.export-based
  exporter, which needs the extra ``onnxscript`` package; the TorchScript exporter is part of torch, works offline and
  handles every layer darknet_torch builds.
* **Opset** :data:`DEFAULT_OPSET` = 13: every op the graph needs exists by opset 11 (Resize for ``[upsample]``,
  ``Range`` for the decode grids, ``NonMaxSuppression``), and 13 is the first opset with today's signatures of
  Split/Squeeze/Unsqueeze/ReduceSum (axes as inputs).  It loads in onnxruntime >= 1.6, TensorRT >= 7.2 and
  OpenVINO, i.e. runtimes from 2020 on; no later opset adds anything this graph uses.  11..20 are accepted.
* **Dynamic sizes**: the decode builds its grids from the feature maps' shapes at run time (``Shape``/``Range``),
  so with ``dynamic_size`` the same file runs at any input size the network accepts: multiples of
  :func:`size_multiple`, the heads' stride or more when some layer is smaller still (yolov4-sam-mish-csp-reorg-bfm:
  stride 32, but two convolutions at 1/64 of the input, so multiples of 64).  ``[connected]`` and ``[local]`` layers
  hold weights for one input size, so such networks are refused for dynamic size.  The two trace-time shape tests
  in ``[shortcut]`` (equal shapes? shorter flat length?) have the same answer at every such size, so the tracer's
  warnings about them are silenced.
* **NMS** stays outside the graph by default (Darknet's own NMS kinds are not ONNX ops).  ``nms=NmsOptions(...)``
  appends a class-wise ONNX ``NonMaxSuppression`` on ``score = objectness * class probability`` (Darknet's
  ``prob``), i.e. Darknet's default ``do_nms_sort`` rule (suppress when IoU > ``iou_thresh``; keep
  ``score > score_thresh``); the output is then ``detections`` (K x 7): ``batch_index, x1, y1, x2, y2, score,
  class_id`` in input pixels, ordered by image, class, then descending score (onnxruntime's order).
  Cfgs with ``nms_kind=greedynms/diounms`` use DIoU-based suppression in Darknet, which plain IoU NMS only
  approximates.
"""
from __future__ import annotations

import io
import logging
import math
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from darknet_torch.detect.settings import DETECTOR_TEST
from darknet_torch.errors import CfgError, DarknetError
from darknet_torch.files import write_atomic
from darknet_torch.model.darknet import Darknet
from darknet_torch.model.layers.conv import Connected, ConvBlock
from darknet_torch.model.layers.legacy import LocalLayer
from darknet_torch.runtime import model_device

log = logging.getLogger(__name__)

DEFAULT_OPSET = 13
MIN_OPSET, MAX_OPSET = 11, 20  # 11: Resize/Range/NonMaxSuppression as used here; 20: the TorchScript exporter's max
INPUT_NAME, OUTPUT_NAME = "images", "detections"


@dataclass(frozen=True)
class NmsOptions:
    """Class-wise NMS appended to the graph: keep ``score > score_thresh``, suppress when IoU > ``iou_thresh``."""

    iou_thresh: float = DETECTOR_TEST.nms
    score_thresh: float = DETECTOR_TEST.thresh
    max_per_class: int = 1000  # per image and class; Darknet has no limit, so keep it large


class _NonMaxSuppression(torch.autograd.Function):
    """ONNX ``NonMaxSuppression`` (boxes as centre/size); exists only to be traced into the graph."""

    @staticmethod
    def forward(ctx, boxes: Tensor, scores: Tensor, max_per_class: Tensor, iou_thresh: Tensor,
                score_thresh: Tensor) -> Tensor:
        if not torch.jit.is_tracing():
            raise RuntimeError("the NMS node only exists in the exported ONNX graph; run the model with onnxruntime")
        return torch.zeros((1, 3), dtype=torch.int64)  # (batch, class, box) rows; values unused while tracing

    @staticmethod
    def symbolic(g, boxes, scores, max_per_class, iou_thresh, score_thresh):
        return g.op("NonMaxSuppression", boxes, scores, max_per_class, iou_thresh, score_thresh,
                    center_point_box_i=1)


class _DetectionsWithNms(nn.Module):
    """``Darknet.forward`` followed by class-wise NMS; export-only (see :class:`_NonMaxSuppression`)."""

    def __init__(self, model: Darknet, nms: NmsOptions) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("max_per_class", torch.tensor([nms.max_per_class], dtype=torch.int64), persistent=False)
        self.register_buffer("iou_thresh", torch.tensor([nms.iou_thresh], dtype=torch.float32), persistent=False)
        self.register_buffer("score_thresh", torch.tensor([nms.score_thresh], dtype=torch.float32), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        out = self.model(x)                                            # B N 5+C
        boxes = out[..., :4]                                           # cx cy w h
        scores = (out[..., 4:5] * out[..., 5:]).transpose(1, 2)        # B C N: Darknet's prob = obj * cls
        keep = _NonMaxSuppression.apply(boxes, scores, self.max_per_class, self.iou_thresh, self.score_thresh)
        batch, cls, index = keep[:, 0], keep[:, 1], keep[:, 2]
        num_boxes, num_classes = scores.shape[2], scores.shape[1]
        # flat gathers (one ONNX Gather each) instead of advanced indexing
        kept = boxes.reshape(-1, 4).index_select(0, batch * num_boxes + index)
        score = scores.reshape(-1).index_select(0, (batch * num_classes + cls) * num_boxes + index)
        corners = torch.cat([kept[:, :2] - kept[:, 2:] / 2, kept[:, :2] + kept[:, 2:] / 2], dim=1)
        return torch.cat([batch[:, None].to(out.dtype), corners, score[:, None], cls[:, None].to(out.dtype)], dim=1)


@contextmanager
def fused_eval(model: Darknet) -> Iterator[Darknet]:
    """The model in eval mode with BN folded; on exit, restore its mode and unfuse what was not fused before."""
    was_training = model.training
    unfused = [m for m in model.modules() if isinstance(m, ConvBlock) and m.fused is None]
    model.eval().fuse()
    try:
        yield model
    finally:
        for module in unfused:
            module.unfuse()
        model.train(was_training)


def _check_options(model: Darknet, opset: int, dynamic_size: bool, batch_size: int, nms: NmsOptions | None) -> None:
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise DarknetError(f"ONNX opset {opset} is not supported; use {MIN_OPSET}..{MAX_OPSET} "
                           f"(default {DEFAULT_OPSET})")
    if batch_size < 1:
        raise DarknetError(f"batch size must be >= 1, got {batch_size}")
    if nms is not None and not (0 <= nms.iou_thresh <= 1 and nms.max_per_class >= 1):
        raise DarknetError(f"NMS needs an IoU threshold in [0, 1] and max_per_class >= 1, got {nms}")
    if not model.head_indices:
        raise CfgError(f"{model.cfg_path}: the network has no [yolo]/[region] head, so it has no detections to export")
    if dynamic_size:
        fixed = [i for i, m in enumerate(model.module_list) if isinstance(m, (Connected, LocalLayer))]
        if fixed:
            section = model.layer_infos[fixed[0]].section
            raise CfgError(f"{section.where()}: [{section.name}] layers hold weights for one fixed input size; export "
                           "without dynamic size")


def size_multiple(model: Darknet) -> int:
    """The step between the input heights/widths ``model`` runs at: the lcm of every layer's downsampling (cfg size /
    its output size), which exceeds the heads' stride when a layer below the last head downsamples further.  Layers
    with a 1x1 output (global pooling, squeeze-excitation) do not follow the input size and are skipped."""
    multiple = model.stride
    for info in model.layer_infos:
        for net, size in zip(model.input_size, info.out_shape[1:]):
            if size > 1 and net % size == 0:
                multiple = math.lcm(multiple, net // size)
    return multiple


def _dynamic_axes(dynamic_batch: bool, dynamic_size: bool, nms: bool) -> dict[str, dict[int, str]]:
    images: dict[int, str] = {}
    if dynamic_batch:
        images[0] = "batch"
    if dynamic_size:
        images.update({2: "height", 3: "width"})
    if nms:
        detections = {0: "num_detections"}
    else:
        detections = {**({0: "batch"} if dynamic_batch else {}), **({1: "boxes"} if dynamic_size else {})}
    return {INPUT_NAME: images, OUTPUT_NAME: detections}


def export_onnx(model: Darknet, path: str | Path, img_size: tuple[int, int] | None = None, batch_size: int = 1,
                dynamic_batch: bool = False, dynamic_size: bool = False, opset: int = DEFAULT_OPSET,
                nms: NmsOptions | None = None) -> Path:
    """Write ``model`` (weights loaded) as an ONNX file at ``path`` (see :func:`onnx_bytes` and :func:`write_onnx`)
    and return the path.

    Raises:
        DarknetError: as :func:`onnx_bytes`, or ``path`` cannot be written.
    """
    data = onnx_bytes(model, img_size, batch_size, dynamic_batch, dynamic_size, opset, nms)
    write_onnx(path, data)
    log.info("exported %s (opset %d, %.1f MB)", path, opset, len(data) / 1e6)
    return Path(path)


def onnx_bytes(model: Darknet, img_size: tuple[int, int] | None = None, batch_size: int = 1,
               dynamic_batch: bool = False, dynamic_size: bool = False, opset: int = DEFAULT_OPSET,
               nms: NmsOptions | None = None) -> bytes:
    """``model`` (weights loaded) as ONNX, in memory, so that a caller can check the graph before writing it.

    The graph is traced at ``img_size`` (H, W; default: the cfg's ``[net]`` size) with ``batch_size`` images; with
    ``dynamic_batch`` / ``dynamic_size`` those axes are free.  Input ``images`` float32 B x C x H x W (C = ``[net]
    channels``; RGB in [0, 1] for 3); output ``detections`` as described in the module docstring (B x N x (5+C), or
    K x 7 with ``nms``).  The model's mode and BN state are restored afterwards.

    Raises:
        DarknetError: bad opset, batch size or NMS options; CfgError: no detection head, a size the network cannot be
        traced at, or dynamic size requested for a network with ``[connected]`` or ``[local]`` layers.
    """
    _check_options(model, opset, dynamic_size, batch_size, nms)
    buffer = io.BytesIO()
    with fused_eval(model), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", message=".*Only steps=1 can be constant folded.*")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning,
                                module=r"darknet_torch\.model\.layers\.routing")
        height, width = img_size or model.input_size
        device = model_device(model)
        seeded = torch.Generator().manual_seed(0)
        x = torch.rand(batch_size, model.net.channels, height, width, generator=seeded).to(device)
        graph = model if nms is None else _DetectionsWithNms(model, nms)
        axes = _dynamic_axes(dynamic_batch, dynamic_size, nms is not None)
        try:
            torch.onnx.export(graph, (x,), buffer, dynamo=False, opset_version=opset, input_names=[INPUT_NAME],
                              output_names=[OUTPUT_NAME], dynamic_axes=axes, do_constant_folding=True)
        except RuntimeError as exc:  # mostly shape errors: sizes the network's routes/shortcuts cannot combine
            raise CfgError(f"{model.cfg_path}: cannot trace the network at {height}x{width} (HxW): {exc}") from exc
    if dynamic_size:
        log.info("dynamic size: input height and width must be multiples of %d", size_multiple(model))
    return buffer.getvalue()


def write_onnx(path: str | Path, data: bytes) -> None:
    """Write ONNX ``data`` atomically (``-``, pipes and devices straight through, see :func:`write_atomic`)."""
    try:
        write_atomic(path, data)
    except OSError as exc:
        raise DarknetError(f"{path}: cannot write the ONNX file ({exc.strerror or exc})") from exc


def onnx_session(model: str | Path | bytes):
    """An onnxruntime CPU session for an ONNX file or its bytes (needs the ``onnx`` extra: ``pip install
    darknet_torch[onnx]``)."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise DarknetError("onnxruntime is not installed; pip install 'darknet_torch[onnx]'") from exc
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only
    source = model if isinstance(model, bytes) else str(model)
    return onnxruntime.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def run_onnx(session, images: np.ndarray | Tensor) -> np.ndarray:
    """Run an exported graph on float32 ``images`` (B x C x H x W) and return its ``detections``.

    Raises:
        DarknetError: onnxruntime cannot run the graph on an input of that shape.
    """
    array = images.detach().cpu().numpy() if isinstance(images, Tensor) else np.asarray(images)
    try:
        return session.run([OUTPUT_NAME], {INPUT_NAME: array.astype(np.float32, copy=False)})[0]
    except Exception as exc:  # onnxruntime's errors (Fail, InvalidArgument, ...) share no base class but Exception
        raise DarknetError(f"onnxruntime cannot run the graph on a {_shape_text(array.shape)} input: {exc}") from exc


def _shape_text(shape: Sequence[int]) -> str:
    return "x".join(map(str, shape))


def compare_with_torch(session, model: Darknet, shapes: Sequence[tuple[int, int, int, int]],
                       seed: int = 0) -> list[float]:
    """Max |onnx - torch| / max |torch| of the detections for a random input of each (B, C, H, W) shape.

    Raises:
        DarknetError: either runtime cannot run the network at one of the shapes, or the outputs' shapes differ.
    """
    generator = torch.Generator().manual_seed(seed)
    errors = []
    with fused_eval(model), torch.no_grad():
        for shape in shapes:
            x = torch.rand(*shape, generator=generator)
            try:
                expected = model(x.to(model_device(model))).cpu().numpy()
            except RuntimeError as exc:  # sizes the network's routes/shortcuts cannot combine
                raise DarknetError(f"PyTorch cannot run the network on a {_shape_text(shape)} input: {exc}") from exc
            got = run_onnx(session, x)
            if got.shape != expected.shape:
                raise DarknetError(f"ONNX output shape {got.shape} != PyTorch {expected.shape} for input {shape}")
            errors.append(float(np.abs(got - expected).max() / max(np.abs(expected).max(), 1e-12)))
    return errors
