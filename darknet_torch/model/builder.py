"""``create_modules``: typed cfg sections -> ``nn.ModuleList``, with Darknet's shape arithmetic.

One table maps section names to builder functions.  Every builder receives the section and the shapes of all earlier
layers, returns its module, output shape and Darknet's BFLOPs count, and raises :class:`CfgError` naming the file, line,
section and key when the cfg cannot work (Darknet itself would often run on and read out of bounds).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Sequence

from torch import nn

from darknet_torch.config.sections import Section
from darknet_torch.errors import CfgError, quoted
from darknet_torch.model.activations import ACTIVATIONS
from darknet_torch.model.heads import GaussianYOLOLayer, RegionLayer, YoloConfig, YOLOLayer
from darknet_torch.model.heads.yolo import YOLO_POINT_SHIFT
from darknet_torch.model.layers.conv import Connected, ConvBlock
from darknet_torch.model.layers.legacy import ContrastiveLayer, CostLayer, CropLayer, DetectionLayer, LocalLayer
from darknet_torch.model.layers.pooling import GlobalAvgPool, LocalAvgPool, MaxPool, MaxPoolDepth
from darknet_torch.model.layers.reshape import Reorg3d, ReorgOld, Upsample
from darknet_torch.model.layers.routing import Route, Sam, ScaleChannels, Shortcut
from darknet_torch.model.layers.simple import ActivationLayer, BatchNormLayer, Identity, Softmax, dropout

log = logging.getLogger(__name__)

# Largest [net] width/height we build: 8192x8192 already needs ~0.8 GB for the input of one image and tens of GB for
# the first layers' activations; anything larger is a typo (e.g. width=100000 tried to allocate 120 GB).
MAX_INPUT_SIDE = 8192

Shape = tuple[int, int, int]  # channels, height, width

# Darknet's value for every anchor width/height the cfg does not give (make_yolo_layer, make_region_layer: .5).
DEFAULT_ANCHOR = 0.5


@dataclass(frozen=True)
class LayerInfo:
    """What the builder knows about one layer: where it came from and Darknet's sizes."""

    index: int
    section: Section
    in_shape: Shape
    out_shape: Shape
    bflops: float


@dataclass(frozen=True)
class BuildContext:
    index: int
    in_shape: Shape
    shapes: tuple[Shape, ...]  # output shapes of layers 0..index-1
    sections: tuple[Section, ...] = ()  # sections of layers 0..index-1
    modules: tuple[nn.Module, ...] = ()  # modules of layers 0..index-1


Built = tuple[nn.Module, Shape, float]


def _activation(sec: Section, key: str = "activation") -> str:
    name = sec[key]
    if name not in ACTIVATIONS:
        raise sec.error(f"unknown activation {quoted(name)}; Darknet knows: {', '.join(sorted(ACTIVATIONS))}", key)
    return name


def _refuse(sec: Section, keys: tuple[str, ...], why: str) -> None:
    for key in keys:
        if sec.has(key) and sec[key]:
            raise sec.refusal(f"{key}={sec[key]} is not supported ({why})", key, reason=key)


def _positive(sec: Section, key: str, value: int) -> int:
    if value < 1:
        raise sec.error(f"{key} must be >= 1, got {value}", key)
    return value


def _layer_ref(sec: Section, key: str, value: int, ctx: BuildContext) -> int:
    """Darknet's layer reference: negative is relative to this layer, otherwise absolute; must be earlier."""
    ref = ctx.index + value if value < 0 else value
    if not 0 <= ref < ctx.index:
        raise sec.error(f"{key}={value} refers to layer {ref}, but layer {ctx.index} can only use layers "
                        f"0..{ctx.index - 1} (references must point backwards)", key)
    return ref


def _need_image(sec: Section, ctx: BuildContext) -> Shape:
    c, h, w = ctx.in_shape
    if not (c and h and w):
        raise sec.error(f"the layer before must output an image, got {c}x{h}x{w}")
    return ctx.in_shape


def build_convolutional(sec: Section, ctx: BuildContext) -> Built:
    _refuse(sec, ("binary", "xnor", "bin_output"), "XNOR/binary convolutions give build-dependent results in Darknet")
    _refuse(sec, ("antialiasing", "sway", "rotate", "stretch", "stretch_sway", "coordconv", "flipped"),
            "not implemented")
    c, h, w = _need_image(sec, ctx)
    filters = _positive(sec, "filters", sec["filters"])
    size = _positive(sec, "size", sec["size"])
    groups = _positive(sec, "groups", sec["groups"])
    if c % groups or filters % groups:
        raise sec.error(f"groups={groups} must divide both the input channels ({c}) and filters ({filters})", "groups")
    stride_x, stride_y = sec["stride_x"], sec["stride_y"]
    if stride_x < 1 or stride_y < 1:
        stride = _positive(sec, "stride", sec["stride"])
        stride_x = stride if stride_x < 1 else stride_x
        stride_y = stride if stride_y < 1 else stride_y
    dilation = 1 if size == 1 else _positive(sec, "dilation", sec["dilation"])
    padding = size // 2 if sec["pad"] else sec["padding"]
    out_h = (h + 2 * padding - size) // stride_y + 1
    out_w = (w + 2 * padding - size) // stride_x + 1
    torch_h = (h + 2 * padding * dilation - dilation * (size - 1) - 1) // stride_y + 1
    if dilation > 1 and torch_h != out_h:
        raise sec.error("dilated convolutions must keep 'same' geometry (Darknet's output size ignores dilation)",
                        "dilation")
    if out_h < 1 or out_w < 1:
        raise sec.error(f"output would be {out_w}x{out_h} for a {w}x{h} input", "size")
    module = ConvBlock(c, filters, size, (stride_y, stride_x), padding, dilation, groups,
                       bool(sec["batch_normalize"] or sec["cbn"]), _activation(sec))
    if sec.has("share_index"):
        _share_weights(sec, ctx, module)
    bflops = 2.0 * (c // groups) * filters * size * size * out_h * out_w / 1e9
    return module, (filters, out_h, out_w), bflops


def _share_weights(sec: Section, ctx: BuildContext, module: ConvBlock) -> None:
    """``share_index``: use another convolution's weights, biases and batch-norm (Darknet points at the same arrays;
    the layer keeps its own stride, padding and dilation, and stores nothing in ``.weights``)."""
    ref = _layer_ref(sec, "share_index", sec["share_index"], ctx)
    source = ctx.modules[ref]
    if not isinstance(source, ConvBlock) or source.shared_with is not None:
        raise sec.error(f"share_index={sec['share_index']} must point to a [convolutional] layer with its own "
                        f"weights, got layer {ref} [{ctx.sections[ref].name}]", "share_index")
    if source.conv.weight.shape != module.conv.weight.shape or (source.bn is None) != (module.bn is None):
        raise sec.error(f"share_index={sec['share_index']}: layer {ref} has filters/size/channels/batch_normalize "
                        f"{tuple(source.conv.weight.shape)} bn={source.bn is not None}, this layer "
                        f"{tuple(module.conv.weight.shape)} bn={module.bn is not None}; they must match", "share_index")
    module.share(source, ref)


def _pooled(sec: Section, ctx: BuildContext) -> tuple[int, tuple[int, int], int, Shape, float]:
    """Darknet's pooling geometry: size (default stride), padding (default size-1), output shape, BFLOPs."""
    c, h, w = _need_image(sec, ctx)
    stride = sec["stride"]
    stride_x = _positive(sec, "stride", sec.get("stride_x", stride))
    stride_y = _positive(sec, "stride", sec.get("stride_y", stride))
    size = _positive(sec, "size", sec.get("size", stride))
    padding = sec.get("padding", size - 1)
    out_h = (h + padding - size) // stride_y + 1
    out_w = (w + padding - size) // stride_x + 1
    return size, (stride_y, stride_x), padding, (c, out_h, out_w), size * size * c * out_h * out_w / 1e9


def build_maxpool(sec: Section, ctx: BuildContext) -> Built:
    _refuse(sec, ("antialiasing",), "not implemented")
    if sec["maxpool_depth"]:
        c, h, w = _need_image(sec, ctx)
        out_c = _positive(sec, "out_channels", sec["out_channels"])
        return MaxPoolDepth(out_c), (out_c, h, w), 0.0
    size, stride, padding, shape, bflops = _pooled(sec, ctx)
    return MaxPool(size, stride, padding), shape, bflops


def build_local_avgpool(sec: Section, ctx: BuildContext) -> Built:
    size, stride, padding, shape, bflops = _pooled(sec, ctx)
    return LocalAvgPool(size, stride, padding), shape, bflops


def build_avgpool(sec: Section, ctx: BuildContext) -> Built:
    c, _, _ = _need_image(sec, ctx)
    return GlobalAvgPool(), (c, 1, 1), 0.0


def build_route(sec: Section, ctx: BuildContext) -> Built:
    sources = tuple(_layer_ref(sec, "layers", v, ctx) for v in sec["layers"])
    groups = _positive(sec, "groups", sec["groups"])
    group_id = sec["group_id"]
    if not 0 <= group_id < groups:
        raise sec.error(f"group_id={group_id} must be in 0..{groups - 1}", "group_id")
    shapes = [ctx.shapes[i] for i in sources]
    _, h, w = shapes[0]
    for i, (c_i, h_i, w_i) in zip(sources, shapes):
        if (h_i, w_i) != (h, w):
            raise sec.error(f"layer {i} is {w_i}x{h_i} but layer {sources[0]} is {w}x{h}; route inputs must share "
                            f"width and height", "layers")
        if c_i % groups:
            raise sec.error(f"groups={groups} does not divide the {c_i} channels of layer {i}", "groups")
    out_c = sum(s[0] for s in shapes) // groups
    return Route(sources, groups, group_id), (out_c, h, w), 0.0


def build_shortcut(sec: Section, ctx: BuildContext) -> Built:
    sources = tuple(_layer_ref(sec, "from", v, ctx) for v in sec["from"])
    weights_type, normalization = sec["weights_type"], sec["weights_normalization"]
    if weights_type not in ("none", "per_feature", "per_layer", "per_channel"):
        raise sec.error(f"weights_type={weights_type} must be none, per_feature or per_channel", "weights_type")
    if normalization not in ("none", "relu", "avg_relu", "softmax"):
        raise sec.error(f"weights_normalization={normalization} must be none, relu or softmax",
                        "weights_normalization")
    weights_type = "per_feature" if weights_type == "per_layer" else weights_type
    normalization = "relu" if normalization == "avg_relu" else normalization
    c, h, w = ctx.in_shape
    module = Shortcut(sources, _activation(sec), weights_type, normalization, channels=c)
    return module, ctx.in_shape, c * h * w * len(sources) / 1e9  # make_shortcut_layer counts one add per input


def build_upsample(sec: Section, ctx: BuildContext) -> Built:
    c, h, w = _need_image(sec, ctx)
    stride = sec["stride"]
    if stride == 0:
        raise sec.error("stride must not be 0 (a positive stride upsamples, a negative one downsamples)", "stride")
    if stride < 0 and (h % -stride or w % -stride):
        # Darknet's out_w = w / stride drops the last rows/columns (or gives a 0x0 output): refused, not guessed.
        raise sec.error(f"stride={stride} must divide the input size {w}x{h} (a negative stride downsamples by "
                        f"{-stride})", "stride")
    shape = (c, h * stride, w * stride) if stride > 0 else (c, h // -stride, w // -stride)
    return Upsample(stride, sec["scale"]), shape, 0.0


def _reorg_shape(sec: Section, ctx: BuildContext) -> tuple[int, Shape]:
    _refuse(sec, ("reverse",), "not implemented")
    c, h, w = _need_image(sec, ctx)
    s = _positive(sec, "stride", sec["stride"])
    if h % s or w % s:
        raise sec.error(f"stride={s} must divide the input size {w}x{h}", "stride")
    return s, (c * s * s, h // s, w // s)


def build_reorg3d(sec: Section, ctx: BuildContext) -> Built:
    s, shape = _reorg_shape(sec, ctx)
    return Reorg3d(s), shape, 0.0


def build_reorg(sec: Section, ctx: BuildContext) -> Built:
    s, shape = _reorg_shape(sec, ctx)
    if ctx.in_shape[0] % (s * s):
        raise sec.error(f"the old [reorg] needs input channels ({ctx.in_shape[0]}) divisible by stride^2", "stride")
    return ReorgOld(s), shape, 0.0


def build_dropout(sec: Section, ctx: BuildContext) -> Built:
    probability = sec["probability"]
    if not 0 <= probability < 1:
        raise sec.error(f"probability={probability} must be in [0, 1)", "probability")
    return dropout(probability), ctx.in_shape, 0.0


def build_sam(sec: Section, ctx: BuildContext) -> Built:
    source = _layer_ref(sec, "from", sec["from"], ctx)
    if ctx.shapes[source] != ctx.in_shape:
        raise sec.error(f"layer {source} has shape {ctx.shapes[source]} but the input is {ctx.in_shape}", "from")
    return Sam(source, _activation(sec)), ctx.in_shape, 0.0


def build_scale_channels(sec: Section, ctx: BuildContext) -> Built:
    source = _layer_ref(sec, "from", sec["from"], ctx)
    c, h, w = ctx.in_shape
    fc, fh, fw = ctx.shapes[source]
    expected = (1, fh, fw) if sec["scale_wh"] else (fc, 1, 1)
    if (c, h, w) != expected:
        raise sec.error(f"the input must be {expected} to scale layer {source} {ctx.shapes[source]}, got {(c, h, w)}",
                        "from")
    return ScaleChannels(source, _activation(sec)), ctx.shapes[source], 0.0


def build_softmax(sec: Section, ctx: BuildContext) -> Built:
    _refuse(sec, ("tree",), "hierarchical softmax trees are not implemented")
    c, h, w = ctx.in_shape
    groups = _positive(sec, "groups", sec["groups"])
    if (c * h * w) % groups:  # make_softmax_layer: assert(inputs%groups == 0), inputs = c*h*w
        raise sec.error(f"groups={groups} must divide the layer's {c * h * w} inputs ({c}x{h}x{w})", "groups")
    return Softmax(groups, sec["temperature"], bool(sec["spatial"])), ctx.in_shape, 0.0


def build_connected(sec: Section, ctx: BuildContext) -> Built:
    c, h, w = ctx.in_shape
    inputs, outputs = c * h * w, _positive(sec, "output", sec["output"])
    module = Connected(inputs, outputs, bool(sec["batch_normalize"]), _activation(sec))
    return module, (outputs, 1, 1), 2.0 * inputs * outputs / 1e9


def build_batchnorm(sec: Section, ctx: BuildContext) -> Built:
    return BatchNormLayer(ctx.in_shape[0]), ctx.in_shape, 0.0


def build_activation(sec: Section, ctx: BuildContext) -> Built:
    return ActivationLayer(_activation(sec)), ctx.in_shape, 0.0


def build_empty(sec: Section, ctx: BuildContext) -> Built:
    return Identity(), ctx.in_shape, 0.0


def _anchors(sec: Section, count: int, used: Sequence[int]) -> tuple[tuple[float, float], ...]:
    """The first ``count`` anchor pairs; missing values are 0.5, Darknet's ``biases`` default (make_yolo_layer,
    make_region_layer).

    Darknet reads the values in order into ``biases[0 .. 2*count-1]``, so an odd count leaves the last anchor's
    height 0.5 and a short list leaves whole anchors 0.5x0.5 (half-pixel boxes for ``[yolo]``): a cfg mistake for
    every anchor ``used``.  We refuse that (naming the anchors), but not a missing ``anchors=`` in ``[region]`` (all
    0.5 grid cells); an odd count that only touches unused anchors or ignored extras is a warning.
    """
    values = list(sec.get("anchors", []))
    if sec.has("anchors"):
        incomplete = [i for i in used if 2 * i + 1 >= len(values)]
        if incomplete:
            raise sec.error(f"{len(values)} values make {len(values) // 2} width,height pairs but num={count} and "
                            f"anchor(s) {incomplete} are used: Darknet would leave their missing values at its "
                            f"default 0.5", "anchors")
        if len(values) % 2:
            log.warning("%s: an odd number of values (%d); anchors are width,height pairs (the unpaired value is "
                        "not used by this head)", sec.where("anchors"), len(values))
    values = values[: 2 * count]
    values += [DEFAULT_ANCHOR] * (2 * count - len(values))
    return tuple((values[2 * i], values[2 * i + 1]) for i in range(count))


def _check_head_input(sec: Section, ctx: BuildContext, needed: int, what: str) -> None:
    c = ctx.in_shape[0]
    if c != needed:
        raise sec.error(f"the layer before has {c} filters but {what} needs {needed}; set filters={needed} in the "
                        f"[convolutional] before this head (Darknet: 'filters= ... doesn't correspond to classes=')")


def build_yolo(sec: Section, ctx: BuildContext) -> Built:
    total = _positive(sec, "num", sec["num"])
    classes = sec["classes"]
    if classes < 0:
        raise sec.error("classes must be >= 0", "classes")
    mask = tuple(sec.get("mask", range(total)))
    bad = [m for m in mask if not 0 <= m < total]
    if bad:
        raise sec.refusal(f"mask refers to anchors {bad} but num={total}: Darknet keeps only num anchors and reads "
                          f"undefined memory for these (set num= to the number of anchors listed)", "mask",
                          reason="mask")
    if not sec.has("anchors"):
        raise sec.error("missing anchors=", "anchors")
    gaussian = sec.name == "Gaussian_yolo"
    entries = (9 if gaussian else 5) + classes
    _check_head_input(sec, ctx, len(mask) * entries, f"classes={classes} with {len(mask)} masked anchors")
    counters = sec.get("counters_per_class")
    if counters is not None and len(counters) != classes:  # Darknet exits here too (get_classes_multipliers)
        raise sec.error(f"counters_per_class has {len(counters)} values but classes={classes}", "counters_per_class")
    config = YoloConfig.from_section(sec, _anchors(sec, total, mask), mask)
    if sec["nms_kind"] not in ("default", "greedynms", "diounms", "cornersnms"):
        raise sec.error(f"nms_kind={sec['nms_kind']} must be default, greedynms or diounms", "nms_kind")
    if sec["iou_thresh_kind"] not in ("iou", "giou", "diou", "ciou"):
        raise sec.error(f"iou_thresh_kind={sec['iou_thresh_kind']} must be iou, giou, diou or ciou", "iou_thresh_kind")
    if sec["iou_loss"] not in ("mse", "iou", "giou", "diou", "ciou"):
        raise sec.error(f"iou_loss={sec['iou_loss']} must be mse, giou, diou or ciou", "iou_loss")
    if gaussian and sec["yolo_point"] not in YOLO_POINT_SHIFT:
        raise sec.error(f"yolo_point={sec['yolo_point']} must be center, left_top or right_bottom (Darknet silently "
                        f"reads any other value as center)", "yolo_point")
    return (GaussianYOLOLayer if gaussian else YOLOLayer)(config), ctx.in_shape, 0.0


def build_region(sec: Section, ctx: BuildContext) -> Built:
    _refuse(sec, ("tree",), "hierarchical softmax trees (yolo9000) are not implemented")
    if sec["coords"] != 4:
        raise sec.error("only coords=4 is supported", "coords")
    num, classes = _positive(sec, "num", sec["num"]), sec["classes"]
    _check_head_input(sec, ctx, num * (5 + classes), f"classes={classes} with num={num}")
    return RegionLayer(num, classes, _anchors(sec, num, range(num)), bool(sec["softmax"])), ctx.in_shape, 0.0


def build_local(sec: Section, ctx: BuildContext) -> Built:
    c, h, w = _need_image(sec, ctx)
    filters = _positive(sec, "filters", sec["filters"])
    size = _positive(sec, "size", sec["size"])
    stride = _positive(sec, "stride", sec["stride"])
    pad = sec["pad"]
    if pad < 0:
        raise sec.error(f"pad={pad} must be >= 0", "pad")
    # local_out_height: (h - 1)/stride + 1 with any pad, (h - size)/stride + 1 without; im2col pads by pad pixels.
    out_h, out_w = ((h - 1) // stride + 1, (w - 1) // stride + 1) if pad else ((h - size) // stride + 1,
                                                                                (w - size) // stride + 1)
    col_h, col_w = (h + 2 * pad - size) // stride + 1, (w + 2 * pad - size) // stride + 1
    if (col_h, col_w) != (out_h, out_w):
        raise sec.error(f"pad={pad} with size={size} gives {col_w}x{col_h} columns but Darknet sizes the output "
                        f"{out_w}x{out_h} (its [local] layer then reads the wrong columns); use pad=(size-1)/2", "pad")
    if out_h < 1 or out_w < 1:
        raise sec.error(f"output would be {out_w}x{out_h} for a {w}x{h} input", "size")
    module = LocalLayer(c, filters, size, stride, pad, (out_h, out_w), _activation(sec))
    return module, (filters, out_h, out_w), 0.0  # make_local_layer sets no bflops: Darknet counts 0


def build_crop(sec: Section, ctx: BuildContext) -> Built:
    c, h, w = _need_image(sec, ctx)
    crop_h = _positive(sec, "crop_height", sec["crop_height"])
    crop_w = _positive(sec, "crop_width", sec["crop_width"])
    if crop_h > h or crop_w > w:
        raise sec.error(f"a {crop_w}x{crop_h} crop does not fit the {w}x{h} input (Darknet reads out of bounds)",
                        "crop_height" if crop_h > h else "crop_width")
    module = CropLayer((crop_h, crop_w), ((h - crop_h) // 2, (w - crop_w) // 2), bool(sec["noadjust"]))
    return module, (c, crop_h, crop_w), 0.0


def build_cost(sec: Section, ctx: BuildContext) -> Built:
    return CostLayer(), ctx.in_shape, 0.0


def build_contrastive(sec: Section, ctx: BuildContext) -> Built:
    ref = _layer_ref(sec, "yolo_layer", sec["yolo_layer"], ctx) if sec["yolo_layer"] else None
    if ref is None or ctx.sections[ref].name != "yolo":
        raise sec.error("yolo_layer= must point to a [yolo] layer (Darknet: '[contrastive] layer should point to "
                        "the [yolo] layer')", "yolo_layer")
    return ContrastiveLayer(), ctx.in_shape, 0.0


def build_detection(sec: Section, ctx: BuildContext) -> Built:
    c, h, w = ctx.in_shape
    side, num, classes, coords = (_positive(sec, k, sec[k]) for k in ("side", "num", "classes", "coords"))
    needed = side * side * ((1 + coords) * num + classes)
    if c * h * w != needed:
        raise sec.error(f"the layer before outputs {c * h * w} values but side={side}, num={num}, classes={classes}, "
                        f"coords={coords} need side*side*((1+coords)*num+classes) = {needed}")
    if coords < 4:
        raise sec.error(f"coords={coords}: boxes need at least 4 coordinates", "coords")
    module = DetectionLayer(side, num, classes, coords, bool(sec["softmax"]), bool(sec["sqrt"]))
    return module, ctx.in_shape, 0.0


BUILDERS: dict[str, Callable[[Section, BuildContext], Built]] = {
    "convolutional": build_convolutional, "maxpool": build_maxpool, "local_avgpool": build_local_avgpool,
    "avgpool": build_avgpool, "route": build_route, "shortcut": build_shortcut, "upsample": build_upsample,
    "reorg3d": build_reorg3d, "reorg": build_reorg, "dropout": build_dropout, "sam": build_sam,
    "scale_channels": build_scale_channels, "softmax": build_softmax, "connected": build_connected,
    "batchnorm": build_batchnorm, "activation": build_activation, "empty": build_empty, "yolo": build_yolo,
    "Gaussian_yolo": build_yolo, "region": build_region, "local": build_local, "crop": build_crop,
    "cost": build_cost, "contrastive": build_contrastive, "detection": build_detection,
}


def input_shape(net: Section) -> Shape:
    """(channels, height, width) from ``[net]``; Darknet cannot build a detector without them."""
    shape = (net["channels"], net["height"], net["width"])
    if not all(shape):
        raise net.error("width=, height= and channels= must all be set (and > 0) in [net]")
    for key in ("width", "height"):
        if net[key] > MAX_INPUT_SIDE:
            gigabytes = net["width"] * net["height"] * net["channels"] * 4 / 1e9
            raise net.error(f"{key}={net[key]} is larger than {MAX_INPUT_SIDE}, the largest input darknet_torch builds "
                            f"(one image alone would need {gigabytes:.1f} GB as input)", key)
    return shape


def create_modules(module_defs: list[Section]) -> tuple[nn.ModuleList, list[LayerInfo]]:
    """Build one module per layer section (``module_defs[0]`` is ``[net]``) and record Darknet's shapes."""
    shape = input_shape(module_defs[0])
    modules = nn.ModuleList()
    infos: list[LayerInfo] = []
    shapes: list[Shape] = []
    for index, sec in enumerate(module_defs[1:]):
        ctx = BuildContext(index=index, in_shape=shape, shapes=tuple(shapes), sections=tuple(module_defs[1:index + 1]), modules=tuple(modules))
        try:
            module, out_shape, bflops = BUILDERS[sec.name](sec, ctx)
        except CfgError:
            raise
        except (KeyError, ValueError, RuntimeError) as exc:  # e.g. an impossible conv for torch: name the section
            raise sec.error(f"cannot build layer {index}: {exc}") from exc
        modules.append(module)
        infos.append(LayerInfo(index=index, section=sec, in_shape=shape, out_shape=out_shape, bflops=bflops))
        shapes.append(out_shape)
        shape = out_shape
    if not modules:
        raise module_defs[0].error("the cfg has no layers after [net]")
    return modules, infos
