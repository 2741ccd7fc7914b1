"""Network slimming (Liu et al. 2017): sparsify batch-norm scales, then cut the channels they switch off.

1. **Sparsity training** (``darknet_torch.train.sparsity``, ``train --sparsity``): ``s * sign(gamma)`` added to the
   gradient of the batch-norm scales :func:`prunable_bn_layers` names, the subgradient of the paper's
   ``s * sum |gamma|`` penalty.
2. **Plan**: :func:`plan_pruning` ranks the output channels of every ``batch_normalize=1`` convolution by ``|gamma|``
   and removes those below a global threshold (from a ratio of all prunable channels, or given), or below a per-layer
   ratio, subject to the cfg's structure (below).
3. **Surgery**: :func:`apply_pruning` writes the new cfg text (the source text with only ``filters=`` values changed,
   so it keeps every key, comment and line of the source: whatever loads the source in the C Darknet loads it) and
   a new :class:`Darknet` whose tensors are the kept slices; :func:`save_pruned` writes ``<out>.cfg`` and
   ``<out>.weights``.

Structure, tracked per *channel slot* (one output channel of a BN convolution) through the graph:

* ``[maxpool]``, ``[local_avgpool]``, ``[avgpool]``, ``[upsample]``, ``[dropout]``, ``[empty]``, ``[activation]``
  and ``[route]`` concatenation pass channels through (route offsets included), so a conv fed by a route loses the
  input channels of every pruned source.
* ``[shortcut]`` ties channel ``c`` of all its inputs: tied channels are removed together, and a channel is kept if
  *any* tied conv keeps it (union rule).
* ``[route] groups=G group_id=i`` (yolov4-tiny's CSP split) is exact: each of the G chunks of every source keeps the
  same number of channels, so the chunk boundaries still fall where the kept channels of chunk ``i`` begin.
* Left unpruned (frozen), with the reason recorded in :attr:`PruningPlan.frozen`: convolutions without batch norm
  (e.g. the conv before a head, whose filters are fixed by classes), grouped/depthwise convolutions and their inputs,
  inputs of a head, of weighted or partial (shape-changing) shortcuts, of ``[sam]``, ``[scale_channels]``,
  ``[reorg]``, ``[reorg3d]``, ``[connected]``, ``[softmax]``, ``[batchnorm]``, ``maxpool_depth`` and the network's
  last layer.

A removed channel is not zero: its BN output is about ``beta`` (``gamma`` is near 0), so it feeds a constant
``act(beta)`` (through the pass-through layers) into every consumer conv.  As the paper's implementations do, that
constant's contribution is folded into the consumer's BN ``running_mean`` (or its bias without BN).  This is exact
for 1x1 consumers and for channels with ``gamma = 0``; for larger kernels it is exact except within ``size//2``
pixels of the border, where Darknet pads with zeros instead of the constant.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from darknet_torch.config import parse_cfg_text, type_sections
from darknet_torch.config.custom import CHANNEL_KEEPING, CfgLineEditor
from darknet_torch.errors import CfgError, DarknetError
from darknet_torch.files import write_atomic
from darknet_torch.model.darknet import Darknet
from darknet_torch.model.layers.conv import ConvBlock
from darknet_torch.runtime import model_device

#: Layers whose output channel c depends only on input channel c and maps a constant map to a constant map.
_PASS_THROUGH = frozenset(CHANNEL_KEEPING) - {"batchnorm"}
#: Activations that mix channels (each output divides by a sum over channels): their layers stay whole.
_CHANNEL_COUPLED = frozenset({"normalize_channels", "normalize_channels_softmax", "normalize_channels_softmax_maxval"})


# ---------------------------------------------------------------------------------------------------- channel graph
class _Slots:
    """Union-find over channel slots; a class (root) may be frozen with the first reason given."""

    def __init__(self) -> None:
        self.parent: list[int] = []
        self.reason: dict[int, str] = {}

    def new(self, count: int, reason: str | None = None) -> np.ndarray:
        start = len(self.parent)
        self.parent.extend(range(start, start + count))
        ids = np.arange(start, start + count)
        if reason is not None:
            self.freeze(ids, reason)
        return ids

    def find(self, slot: int) -> int:
        root = slot
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[slot] != root:
            self.parent[slot], slot = root, self.parent[slot]
        return root

    def union(self, a: Iterable[int], b: Iterable[int]) -> None:
        for x, y in zip(a, b):
            rx, ry = self.find(int(x)), self.find(int(y))
            if rx != ry:
                self.parent[ry] = rx
                if ry in self.reason:
                    self.reason.setdefault(rx, self.reason.pop(ry))

    def freeze(self, ids: Iterable[int], reason: str) -> None:
        for slot in ids:
            self.reason.setdefault(self.find(int(slot)), reason)


@dataclass(frozen=True)
class ChannelGraph:
    """Which channel class every output channel of every layer belongs to.

    ``classes[i][c]`` is the class of channel ``c`` of layer ``i``'s output (channels tied by a ``[shortcut]`` share
    one class); ``frozen`` maps the classes that must be kept to why; ``bn_convs`` lists the ungrouped
    ``batch_normalize=1`` convolutions; ``equal_chunks`` lists ``(layer, G)`` for every source of a grouped route,
    whose G chunks must keep equal numbers of channels.
    """

    classes: tuple[np.ndarray, ...]
    frozen: dict[int, str]
    bn_convs: tuple[int, ...]
    equal_chunks: tuple[tuple[int, int], ...]
    num_classes: int

    def frozen_reason(self, layer: int) -> str | None:
        """Why (some of) layer ``layer``'s channels cannot be removed, or None."""
        return next((self.frozen[c] for c in self.classes[layer] if c in self.frozen), None)


def channel_graph(model: Darknet) -> ChannelGraph:
    """Trace channel classes and structural constraints through ``model`` (see the module docstring)."""
    slots = _Slots()
    image = slots.new(model.net.channels, "network input")
    outputs: list[np.ndarray] = []
    bn_convs: list[int] = []
    equal_chunks: list[tuple[int, int]] = []
    shared = _sharing_convs(model)
    for info, module in zip(model.layer_infos, model.module_list):
        sec, index, channels = info.section, info.index, info.out_shape[0]
        x = outputs[-1] if outputs else image
        sources = [outputs[s] for s in getattr(module, "sources", ())]
        label = f"layer {index} [{sec.name}]"
        coupled = sec.get("activation") in _CHANNEL_COUPLED
        if isinstance(module, ConvBlock) and not coupled:
            if index in shared:  # one kernel for two layers: pruning would have to cut both, inputs and outputs alike
                slots.freeze(x, f"input of {label}, which shares weights (share_index)")
                out = slots.new(channels, f"{label} shares weights (share_index)")
            elif module.conv.groups > 1:
                slots.freeze(x, f"input of grouped convolution {label}")
                out = slots.new(channels, f"grouped convolution {label}")
            elif module.bn is None:
                out = slots.new(channels, f"{label} has no batch norm")
            else:
                out = slots.new(channels)
                bn_convs.append(index)
        elif sec.name in _PASS_THROUGH and not sec.get("maxpool_depth") and not coupled:
            out = x
        elif sec.name == "route":
            if module.groups > 1:
                equal_chunks.extend((s, module.groups) for s in module.sources)
                sources = [np.array_split(s, module.groups)[module.group_id] for s in sources]
            out = np.concatenate(sources)
        elif sec.name == "shortcut" and module.weights is None and not coupled and \
                all(model.layer_infos[s].out_shape == info.in_shape for s in module.sources):
            for source in sources:
                slots.union(x, source)
            out = x
        else:
            reason = "input of a detection head (filters fixed by classes)" if index in model.head_indices else \
                f"input of {label}"
            for ids in (x, *sources):
                slots.freeze(ids, reason)
            out = slots.new(channels, f"output of {label}")
        outputs.append(out)
    slots.freeze(outputs[-1], "network output")
    classes = tuple(np.array([slots.find(int(s)) for s in ids], dtype=np.int64) for ids in outputs)
    frozen = {slots.find(s): r for s, r in slots.reason.items()}
    return ChannelGraph(classes, frozen, tuple(bn_convs), tuple(equal_chunks), len(slots.parent))


def _sharing_convs(model: Darknet) -> set[int]:
    """Convolutions using another's weights (``share_index``) and those they use."""
    pairs = [(i, m.shared_with) for i, m in enumerate(model.module_list)
             if isinstance(m, ConvBlock) and m.shared_with is not None]
    return {i for pair in pairs for i in pair}


def prunable_bn_layers(model: Darknet) -> list[int]:
    """BN convolutions with at least one removable channel: where the sparsity penalty can pay off."""
    graph = channel_graph(model)
    return [i for i in graph.bn_convs if any(c not in graph.frozen for c in graph.classes[i])]


# ---------------------------------------------------------------------------------------------------- planning
@dataclass(frozen=True)
class PruningPlan:
    """Which output channels of each BN convolution survive.

    ``keep[i]``: sorted kept channel indices of conv layer ``i`` (every BN conv has an entry);
    ``threshold``: the global ``|gamma|`` threshold used (None with per-layer ratios);
    ``frozen[i]``: why conv ``i`` keeps (some of) its channels whatever their ``gamma``.
    """

    keep: dict[int, tuple[int, ...]]
    original: dict[int, int]
    threshold: float | None
    frozen: dict[int, str]

    @property
    def removed(self) -> int:
        """Output channels removed, over all BN convolutions."""
        return sum(self.original[i] - len(k) for i, k in self.keep.items())

    @property
    def changed_layers(self) -> list[int]:
        return [i for i, k in self.keep.items() if len(k) != self.original[i]]


def _ratio_threshold(gammas: np.ndarray, ratio: float) -> float:
    """|gamma| below which ``ratio`` of ``gammas`` lie: the ``int(ratio*n)``-th smallest (nothing for ratio 0)."""
    k = int(ratio * len(gammas))
    if k == 0 or len(gammas) == 0:
        return -math.inf
    return math.inf if k >= len(gammas) else float(np.sort(gammas)[k])


def _smallest(gammas: np.ndarray, ratio: float) -> np.ndarray:
    """Mask of the ``int(ratio*n)`` smallest ``gammas``; ties (e.g. a layer of zeros) are taken in order, so the ratio
    is met even when many values equal the threshold (``gammas >= threshold`` would keep all of them)."""
    mask = np.zeros(len(gammas), bool)
    mask[np.argsort(gammas, kind="stable")[:int(ratio * len(gammas))]] = True
    return mask


def _check_gammas(model: Darknet, gammas: dict[int, np.ndarray]) -> None:
    """Refuse NaN/inf batch-norm scales: they cannot be ranked (NaN compares false: the channel and, through the
    threshold, whole layers would be removed)."""
    for i, values in gammas.items():
        bad = int((~np.isfinite(values)).sum())
        if bad:
            raise DarknetError(f"{model.layer_infos[i].section.where()} (layer {i}): {bad} of {len(values)} batch-norm "
                               f"scales (gamma) are NaN or inf; the weights are broken (a diverged training?) and "
                               f"cannot be pruned")


def plan_pruning(model: Darknet, ratio: float | None = None, threshold: float | None = None, *,
                 per_layer: bool = False, per_layer_min: int = 8, round_to: int = 1) -> PruningPlan:
    """Plan network slimming: remove the channels whose ``|gamma|`` is below the threshold, within the cfg's rules.

    Args:
        ratio: fraction in [0, 1) of all prunable BN channels to remove, ranked by ``|gamma|`` over the whole network
            (with ``per_layer``: within each layer); equal ``|gamma|`` are taken in network order.  Tied channels
            make the result a little smaller.
        threshold: remove channels with ``|gamma| < threshold`` (instead of ``ratio``); must be finite.
        per_layer_min: every BN conv keeps at least this many channels (or all it has).
        round_to: round every pruned conv's channel count up to a multiple of this (e.g. 8 for SIMD-friendly sizes).

    A channel class (channels tied by shortcuts) is kept if any of its channels is above its threshold; frozen
    classes are always kept; the minimum, rounding and grouped-route chunk counts are met by also keeping the
    removed channels with the largest ``|gamma|``.

    Raises:
        ValueError: arguments out of range (a NaN or infinite ``threshold`` included).
        DarknetError: a batch-norm scale is NaN or inf (named by cfg location and layer).
    """
    if (ratio is None) == (threshold is None):
        raise ValueError("give exactly one of ratio and threshold")
    if ratio is not None and not 0 <= ratio < 1:
        raise ValueError(f"ratio must be in [0, 1), got {ratio}")
    if per_layer and ratio is None:
        raise ValueError("per_layer needs a ratio")
    if per_layer_min < 1 or round_to < 1:
        raise ValueError("per_layer_min and round_to must be >= 1")
    if threshold is not None and not math.isfinite(threshold):
        raise ValueError(f"threshold must be a finite number, got {threshold}")
    graph = channel_graph(model)
    gammas = {i: model.module_list[i].bn.weight.detach().abs().cpu().double().numpy() for i in graph.bn_convs}
    _check_gammas(model, gammas)
    prunable = {i: np.array([c not in graph.frozen for c in graph.classes[i]], bool) for i in graph.bn_convs}
    below = {i: np.zeros(len(gammas[i]), bool) for i in graph.bn_convs}  # channels the ratio/threshold removes
    global_threshold = None
    if threshold is not None:
        global_threshold = threshold
        below = {i: gammas[i] < threshold for i in graph.bn_convs}
    elif per_layer:
        for i in graph.bn_convs:
            below[i][prunable[i]] = _smallest(gammas[i][prunable[i]], ratio)
    else:
        pool = np.concatenate([gammas[i][prunable[i]] for i in graph.bn_convs] or [np.zeros(0)])
        global_threshold = _ratio_threshold(pool, ratio)
        smallest = np.split(_smallest(pool, ratio), np.cumsum([prunable[i].sum() for i in graph.bn_convs])[:-1])
        for i, mask in zip(graph.bn_convs, smallest):
            below[i][prunable[i]] = mask
    kept = np.zeros(graph.num_classes, bool)
    kept[list(graph.frozen)] = True
    score = np.zeros(graph.num_classes)  # a class ranks by its largest |gamma|
    for i in graph.bn_convs:
        np.maximum.at(score, graph.classes[i], gammas[i])
        kept[graph.classes[i][~below[i]]] = True
    _enforce_counts(graph, kept, score, per_layer_min, round_to)
    keep = {i: tuple(int(c) for c in np.flatnonzero(kept[graph.classes[i]])) for i in graph.bn_convs}
    frozen = {i: r for i in graph.bn_convs if (r := graph.frozen_reason(i)) is not None}
    original = {i: len(graph.classes[i]) for i in graph.bn_convs}
    return PruningPlan(keep, original, global_threshold, frozen)


def _keep_best(kept: np.ndarray, classes: np.ndarray, score: np.ndarray, count: int) -> bool:
    """Also keep the ``count`` best-scoring removed classes among ``classes``; True if anything changed."""
    removed = np.unique(classes[~kept[classes]])
    best = removed[np.argsort(-score[removed], kind="stable")[:count]]
    kept[best] = True
    return len(best) > 0


def _enforce_counts(graph: ChannelGraph, kept: np.ndarray, score: np.ndarray, minimum: int, round_to: int) -> None:
    """Keep more channels until every count rule holds; keeping only grows, so this reaches a fixed point."""
    changed = True
    while changed:
        changed = False
        for i in graph.bn_convs:
            classes = graph.classes[i]
            count, total = int(kept[classes].sum()), len(classes)
            need = min(total, -(-max(count, minimum) // round_to) * round_to)
            if count < need:
                changed |= _keep_best(kept, classes, score, need - count)
        for layer, groups in graph.equal_chunks:
            chunks = np.array_split(graph.classes[layer], groups)
            target = max(int(kept[c].sum()) for c in chunks)
            for chunk in chunks:
                if kept[chunk].sum() < target:
                    changed |= _keep_best(kept, chunk, score, target - int(kept[chunk].sum()))


# ---------------------------------------------------------------------------------------------------- surgery
def apply_pruning(model: Darknet, plan: PruningPlan, cfg_text: str | None = None,
                  fold: bool = True) -> tuple[str, Darknet]:
    """The pruned network: ``(cfg text, model)``; ``model`` is left unchanged.

    ``cfg_text``: the text ``model`` was built from (default: read ``model.cfg_path``); the result differs from it
    only in the ``filters=`` values of pruned convolutions.  ``fold``: fold removed channels' constant output into
    the consumers (module docstring); False only to measure what folding buys.  The new model has ``model``'s
    header (``seen``), mode and device.

    Raises:
        ValueError: the plan removes a frozen channel, tied convolutions disagree, or a grouped route's chunks would
            keep different numbers of channels.
        CfgError: ``cfg_text`` is not the text ``model`` was built from.
    """
    graph = channel_graph(model)
    masks = _layer_masks(model, graph, plan)
    new_filters = {i: int(masks[i].sum()) for i in plan.keep if masks[i].sum() != len(masks[i])}
    text = _rewrite_filters(model, cfg_text, new_filters)
    path = f"{model.cfg_path or '<cfg>'} (pruned)"
    pruned = Darknet(type_sections(parse_cfg_text(text, path)))
    values = _removed_values(model, masks) if fold else [torch.zeros(len(m)) for m in masks]
    image = np.ones(model.net.channels, bool)
    with torch.no_grad():
        for index, (old, new) in enumerate(zip(model.module_list, pruned.module_list)):
            if isinstance(old, ConvBlock):
                in_mask = masks[index - 1] if index else image
                in_values = values[index - 1] if index else torch.zeros(len(image))
                new.load_state_dict(_sliced_conv_state(old, masks[index], in_mask, in_values))
            else:
                new.load_state_dict(old.state_dict())
    pruned.header = dataclasses.replace(model.header)
    device = model_device(model)
    return text, pruned.to(device).train(model.training)


def _layer_masks(model: Darknet, graph: ChannelGraph, plan: PruningPlan) -> list[np.ndarray]:
    """Kept-channel mask of every layer's output, after checking the plan against the graph's rules."""
    kept = np.ones(graph.num_classes, bool)
    wanted: dict[int, np.ndarray] = {}
    for i, channels in plan.keep.items():
        if i not in graph.bn_convs:
            raise ValueError(f"layer {i} is not a prunable batch-norm convolution")
        mask = np.zeros(len(graph.classes[i]), bool)
        mask[list(channels)] = True
        wanted[i] = mask
        kept[graph.classes[i][~mask]] = False
    for root, reason in graph.frozen.items():
        if not kept[root]:
            raise ValueError(f"the plan removes a channel that must stay: {reason}")
    for i, mask in wanted.items():
        if not np.array_equal(kept[graph.classes[i]], mask):
            raise ValueError(f"layer {i}: channels tied to it by a [shortcut] are removed elsewhere but kept here "
                             f"(tied convolutions must keep the same channels)")
    masks = [kept[c] for c in graph.classes]
    for layer, groups in graph.equal_chunks:
        counts = {int(m.sum()) for m in np.array_split(masks[layer], groups)}
        if len(counts) > 1:
            raise ValueError(f"layer {layer} feeds a [route] groups={groups}; its chunks would keep {sorted(counts)} "
                             f"channels, they must keep equal numbers")
    return masks


def _removed_values(model: Darknet, masks: list[np.ndarray]) -> list[Tensor]:
    """Per layer output channel: the constant a removed channel would have carried (0 for kept channels)."""
    values: list[Tensor] = []
    for info, module, mask in zip(model.layer_infos, model.module_list, masks):
        removed = torch.from_numpy(~mask)
        if not removed.any():
            values.append(torch.zeros(len(mask)))
            continue
        name, x = info.section.name, values[-1] if values else None
        if isinstance(module, ConvBlock):
            value = module.act(module.bn.bias.detach().float().cpu())  # BN output ~ beta when gamma ~ 0
        elif name == "upsample":
            value = x * module.scale * (module.stride ** 2 if module.stride < 0 else 1)
        elif name == "activation":
            value = module.act(x)
        elif name == "route":
            value = torch.cat([values[s].chunk(module.groups)[module.group_id] for s in module.sources])
        elif name == "shortcut":
            value = module.act(x + sum(values[s] for s in module.sources))
        else:  # the other pass-through layers
            value = x
        values.append(torch.where(removed, value, torch.zeros(())))
    return values


def _sliced_conv_state(conv: ConvBlock, out_mask: np.ndarray, in_mask: np.ndarray,
                       in_values: Tensor) -> dict[str, Tensor]:
    """``conv``'s state with only kept output/input channels; removed inputs' constants folded in."""
    state = {k: v.detach().clone() for k, v in conv.state_dict().items()}
    out_idx, in_idx = torch.from_numpy(np.flatnonzero(out_mask)), torch.from_numpy(np.flatnonzero(in_mask))
    weight = state["conv.weight"]
    if in_values.any():  # sum over kernel taps and removed inputs of w * constant (interior-exact)
        shift = weight.sum(dim=(2, 3)).double() @ in_values.double().to(weight.device)
        if conv.bn is not None:
            state["bn.running_mean"] -= shift.to(weight.dtype)
        else:
            state["conv.bias"] += shift.to(weight.dtype)
    if conv.conv.groups == 1:
        weight = weight[:, in_idx]
    state["conv.weight"] = weight[out_idx]
    for key in ("conv.bias", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"):
        if key in state:
            state[key] = state[key][out_idx]
    return state


def _rewrite_filters(model: Darknet, cfg_text: str | None, filters: dict[int, int]) -> str:
    """``cfg_text`` with the ``filters=`` value of layer i set to ``filters[i]``; every other byte kept."""
    if cfg_text is None:
        if model.cfg_path is None:
            raise ValueError("the model was built from sections: pass the cfg text it came from")
        try:
            cfg_text = model.cfg_path.read_bytes().decode("utf-8", "surrogateescape")
        except OSError as exc:
            raise CfgError(f"cannot read cfg file {model.cfg_path}: {exc.strerror or exc}") from exc
    raws = parse_cfg_text(cfg_text, str(model.cfg_path or "<cfg>"))
    editor = CfgLineEditor(cfg_text)
    for index, count in filters.items():
        sec, raw = model.layer_infos[index].section, raws[index + 1] if index + 1 < len(raws) else None
        option = raw.options.get("filters") if raw is not None else None
        if option is None or option.line != sec.explicit.get("filters") or int(option.value) != sec["filters"]:
            raise CfgError(f"{sec.where('filters')}: the cfg text given is not the one this model was built from")
        editor.replace_value(option.line, str(count))
    return editor.text()


def save_pruned(cfg_text: str, model: Darknet, output: str | Path) -> tuple[Path, Path]:
    """Write ``<output>.cfg`` and ``<output>.weights`` (Darknet's format, atomically); returns both paths."""
    output = Path(output)
    cfg_path, weights_path = Path(f"{output}.cfg"), Path(f"{output}.weights")
    write_atomic(cfg_path, cfg_text.encode("utf-8", "surrogateescape"))
    model.save_darknet_weights(weights_path)
    return cfg_path, weights_path


# ---------------------------------------------------------------------------------------------------- costs
@dataclass(frozen=True)
class NetworkCost:
    """Size and work of a network as Darknet counts them (BFLOPs of ``[net]``'s input size)."""

    params: int
    bflops: float


def network_cost(model: nn.Module, layers: Iterable[int] | None = None) -> NetworkCost:
    """Parameters (learnt tensors, BN scales/shifts included) and Darknet BFLOPs of ``layers`` (default: all)."""
    indices = range(len(model.module_list)) if layers is None else layers
    params = sum(p.numel() for i in indices for p in model.module_list[i].parameters())
    bflops = sum(model.layer_infos[i].bflops for i in indices)
    return NetworkCost(params, bflops)
