"""Darknet ``.weights`` files in and out, strictly.

Layout (parser.c ``load_weights_upto``/``save_weights_upto``): int32 major, minor, revision; ``seen`` as uint64 when
``major*10+minor >= 2`` else uint32; then, layer by layer, the tensors each module lists in ``darknet_params()``.
Darknet silently stops at the end of the file; we refuse a file that is too short or too long for the cfg, naming the
layer, unless the caller asks for a prefix (``cutoff``) or a partial backbone (``partial=True``).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from darknet_torch.errors import WeightsError
from darknet_torch.files import write_atomic

log = logging.getLogger(__name__)


@dataclass
class WeightsHeader:
    """The version and images-seen counter at the start of a ``.weights`` file."""

    major: int = 0
    minor: int = 2
    revision: int = 5
    seen: int = 0

    @property
    def seen_bytes(self) -> int:
        return 8 if self.major * 10 + self.minor >= 2 else 4

    @property
    def transposed_connected(self) -> bool:
        """Very old files store ``[connected]`` weights transposed."""
        return self.major > 1000 or self.minor > 1000

    def to_bytes(self) -> bytes:
        seen_type = "<u8" if self.seen_bytes == 8 else "<u4"
        return np.array([self.major, self.minor, self.revision], "<i4").tobytes() + \
            np.array([self.seen], seen_type).tobytes()


def _parse_header(data: bytes, path: Path) -> tuple[WeightsHeader, int]:
    if len(data) < 12:
        raise WeightsError(f"{path}: {len(data)} bytes is too short for a Darknet weights header")
    major, minor, revision = (int(v) for v in np.frombuffer(data[:12], "<i4"))
    header = WeightsHeader(major, minor, revision)
    end = 12 + header.seen_bytes
    if len(data) < end:
        raise WeightsError(f"{path}: truncated header")
    header.seen = int(np.frombuffer(data[12:end], "<u8" if header.seen_bytes == 8 else "<u4")[0])
    return header, end


@dataclass(frozen=True)
class ParamSlot:
    """One layer's share of the file: which layer and which tensors, in file order."""

    layer: int
    label: str
    tensors: tuple[Tensor, ...]

    @property
    def numel(self) -> int:
        return sum(t.numel() for t in self.tensors)


@dataclass(frozen=True)
class LoadSkips:
    """Layers whose values Darknet does not read from the file (parser.c ``load_weights_upto``): ``dontload=1``
    layers are passed over whole, and ``dontloadscales=1`` layers read no batch-norm scales, means and variances.
    Darknet does not advance in the file for them either, so the next values go to what follows."""

    layers: frozenset[int] = frozenset()
    scales: frozenset[int] = frozenset()


def param_slots(module_list: nn.ModuleList, labels: list[str], cutoff: int | None = None,
                skips: LoadSkips = LoadSkips()) -> list[ParamSlot]:
    """The layers that store weights, in file order, up to (not including) layer ``cutoff``; ``skips`` (loading
    only) leaves out what Darknet does not read."""
    slots = []
    for index, module in enumerate(module_list):
        if cutoff is not None and index >= cutoff:
            break
        if index in skips.layers:
            continue
        params = getattr(module, "darknet_params", None)
        tensors = tuple(params()) if params else ()
        if index in skips.scales:
            unread = _batch_norm_statistics(module)
            tensors = tuple(t for t in tensors if id(t) not in unread)
        if tensors:
            slots.append(ParamSlot(index, labels[index], tensors))
    return slots


def _batch_norm_statistics(module: nn.Module) -> set[int]:
    """ids of the tensors Darknet calls scales, rolling_mean and rolling_variance (its batch-norm shift is the layer's
    ``biases``, always read)."""
    return {id(t) for sub in module.modules() if isinstance(sub, nn.modules.batchnorm._BatchNorm)
            for t in (sub.weight, sub.running_mean, sub.running_var) if t is not None}


def _misalignment_hint(slots: list[ParamSlot], values: np.ndarray) -> str:
    """Find the first batch-norm layer whose variances read as invalid: the file and cfg part ways there or earlier."""
    offset = 0
    for slot in slots:
        if len(slot.tensors) >= 4:  # biases, scales, mean, variance, ...
            n = slot.tensors[0].numel()
            variances = values[offset + 3 * n: offset + 4 * n]
            if len(variances) == n and not (np.isfinite(variances).all() and (variances >= 0).all()):
                return (f" The file stops matching the cfg at or before layer {slot.layer} ({slot.label}): its "
                        f"batch-norm variances read as negative or invalid.")
        offset += slot.numel
    return ""


def load_darknet_weights(module_list: nn.ModuleList, labels: list[str], path: str | Path,
                         cutoff: int | None = None, partial: bool = False,
                         skips: LoadSkips = LoadSkips()) -> WeightsHeader:
    """Load ``path`` into the modules; ``labels[i]`` names layer i in messages (e.g. ``cfg:line [convolutional]``).

    ``cutoff``: load only layers before it (the file may hold more, as Darknet's ``load_weights_upto``).
    ``partial``: the file may end early at a layer boundary (a backbone such as ``yolov4-tiny.conv.29``).
    ``skips``: what the cfg's ``dontload``/``dontloadscales`` keep from being read (those tensors keep their values).
    Otherwise the file must hold exactly what the cfg needs.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise WeightsError(f"cannot read weights file {path}: {exc.strerror or exc}") from exc
    header, start = _parse_header(data, path)
    ragged = (len(data) - start) % 4
    values = np.frombuffer(data[: len(data) - ragged], "<f4", offset=start)
    slots = param_slots(module_list, labels, cutoff, skips)
    needed = sum(s.numel for s in slots)
    if ragged and len(values) >= needed:
        raise WeightsError(f"{path}: the body is {len(data) - start} bytes, not a whole number of float32 values; "
                           f"the file is damaged or not a Darknet .weights file")
    if len(values) < needed and not partial:
        missing_at, _ = _first_unfilled(slots, len(values))
        raise WeightsError(
            f"{path}: holds {len(values):,} floats but the cfg needs {needed:,}; it ends inside layer "
            f"{missing_at.layer} ({missing_at.label}). The file is truncated or belongs to a different cfg "
            f"(classes=/filters= differ?). A backbone file such as *.conv.N loads only as one: train --partial "
            f"(automatic for *.conv.N names), partial=True in Python, or a smaller partial --layers."
            + _misalignment_hint(slots, values))
    if len(values) > needed and cutoff is None:
        raise WeightsError(
            f"{path}: holds {len(values):,} floats but the cfg needs only {needed:,} ({len(values) - needed:,} "
            f"left over). The weights belong to a bigger network (classes=/filters= differ, or a different cfg)."
            + _misalignment_hint(slots, values))
    if len(values) < needed:
        _check_layer_boundary(slots, len(values), path)  # before copying anything: a refused file changes nothing
    offset, loaded = 0, 0
    with torch.no_grad():
        for slot in slots:
            if offset + slot.numel > len(values):
                break
            for i, tensor in enumerate(slot.tensors):
                chunk = values[offset: offset + tensor.numel()]
                if _is_transposed(header, i, tensor):
                    chunk = chunk.reshape(tensor.shape[1], tensor.shape[0]).T
                tensor.copy_(torch.from_numpy(np.array(chunk)).reshape(tensor.shape))
                offset += tensor.numel()
            loaded += 1
    log.info("loaded %s: %d of %d weighted layers, %d of %d floats (header %d.%d.%d, seen %d)", path, loaded,
             len(slots), offset, len(values), header.major, header.minor, header.revision, header.seen)
    warn_suspicious_values(module_list, labels, path)
    return header


def suspicious_values(module_list: nn.ModuleList, labels: list[str]) -> list[str]:
    """One line per layer holding NaN/inf weights or negative batch-norm variances (``labels[i]`` names layer i).

    A file of the right size can still be garbage (random bytes, a diverged training run): it loads, but every
    detection is NaN or empty.  This is what tells the user why.
    """
    problems = []
    for index, module in enumerate(module_list):
        found = [name for name, tensor in [*module.named_parameters(), *module.named_buffers()]
                 if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())]
        issues = [f"NaN/inf in {', '.join(found)}"] if found else []
        negative = [name for name, sub in module.named_modules()
                    if isinstance(sub, nn.modules.batchnorm._BatchNorm) and sub.running_var is not None
                    and bool((sub.running_var < 0).any())]
        issues += [f"negative batch-norm variance in {name or 'bn'}" for name in negative]
        if issues:
            problems.append(f"layer {index} ({labels[index]}): {'; '.join(issues)}")
    return problems


def warn_suspicious_values(module_list: nn.ModuleList, labels: list[str], source: str | Path) -> None:
    """Log :func:`suspicious_values` as warnings (the first five layers, then a count)."""
    problems = suspicious_values(module_list, labels)
    for line in problems[:5]:
        log.warning("%s: suspicious weights: %s", source, line)
    if len(problems) > 5:
        log.warning("%s: suspicious weights in %d more layers; the file is damaged or from a diverged run", source,
                    len(problems) - 5)


def _is_transposed(header: WeightsHeader, position: int, tensor: Tensor) -> bool:
    """Only a ``[connected]`` matrix (the 2-D tensor second in its slot) is ever stored transposed."""
    return header.transposed_connected and position == 1 and tensor.dim() == 2


def _check_layer_boundary(slots: list[ParamSlot], available: int, path: Path) -> None:
    """A partial file (``available`` floats, fewer than ``slots`` need) must end where a layer ends; checked before
    any copy so a refused load leaves the model as it was."""
    slot, start = _first_unfilled(slots, available)
    if start != available:
        raise WeightsError(f"{path}: ends in the middle of layer {slot.layer} ({slot.label}); a partial file must end "
                           f"at a layer boundary")


def _first_unfilled(slots: list[ParamSlot], available: int) -> tuple[ParamSlot, int]:
    """The first layer ``available`` floats cannot fill, and the offset where its values start."""
    start = 0
    for slot in slots:
        if start + slot.numel > available:
            return slot, start
        start += slot.numel
    return slots[-1], start - slots[-1].numel


def save_darknet_weights(module_list: nn.ModuleList, labels: list[str], path: str | Path, header: WeightsHeader,
                         cutoff: int | None = None) -> None:
    """Write a Darknet-loadable file atomically (temporary file, then rename), layers before ``cutoff`` only."""
    path = Path(path)
    chunks = [header.to_bytes()]
    for slot in param_slots(module_list, labels, cutoff):
        for i, tensor in enumerate(slot.tensors):
            array = tensor.detach().to("cpu", torch.float32).numpy()
            if _is_transposed(header, i, tensor):
                array = array.T
            chunks.append(np.ascontiguousarray(array, "<f4").tobytes())
    write_atomic(path, b"".join(chunks))
