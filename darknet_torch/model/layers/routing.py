"""Layers that read earlier outputs: ``[route]``, ``[shortcut]``, ``[sam]``, ``[scale_channels]``.

Each holds ``sources``, the absolute indices of the layers it reads, and receives their outputs in that order, so the
network's forward stays one generic loop.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from darknet_torch.model.activations import Activation


class Route(nn.Module):
    """Concatenate along channels; with ``groups=G, group_id=i`` take the i-th of G contiguous chunks of *each* input."""

    def __init__(self, sources: tuple[int, ...], groups: int = 1, group_id: int = 0) -> None:
        super().__init__()
        self.sources, self.groups, self.group_id = sources, groups, group_id

    def forward(self, x: Tensor, refs: list[Tensor]) -> Tensor:
        if self.groups > 1:
            refs = [r.chunk(self.groups, dim=1)[self.group_id] for r in refs]
        return refs[0] if len(refs) == 1 else torch.cat(refs, dim=1)


class Shortcut(nn.Module):
    """Residual sum ``act(x + sum(from))``, optionally weighted per input or per channel.

    When shapes differ Darknet adds the flat buffers over the first ``min(len)`` elements of each sample (a "partial
    residual": with equal w,h only the first channels get the residual).  Tested on yolov3-tiny-prn and enet-coco.
    """

    def __init__(self, sources: tuple[int, ...], activation: str, weights_type: str = "none",
                 weights_normalization: str = "none", channels: int = 0) -> None:
        super().__init__()
        self.sources = sources
        self.act = Activation(activation)
        self.normalization = weights_normalization
        n = len(sources) + 1
        if weights_type == "none":
            self.weights = None
        else:
            per_channel = weights_type == "per_channel"
            self.weights = nn.Parameter(torch.ones(n, channels if per_channel else 1))

    def forward(self, x: Tensor, refs: list[Tensor]) -> Tensor:
        weights = self._normalized_weights()
        out = x if weights is None else x * weights[0].reshape(1, -1, 1, 1)
        for i, ref in enumerate(refs, start=1):
            out = _add_flat_prefix(out, ref, None if weights is None else weights[i].reshape(1, -1, 1, 1))
        return self.act(out)

    def _normalized_weights(self) -> Tensor | None:
        if self.weights is None or self.normalization == "none":
            return self.weights
        w = self.weights
        if self.normalization == "softmax":
            e = torch.exp(w - w.max(dim=0, keepdim=True).values)
            return e / (e.sum(dim=0, keepdim=True) + 1e-4)
        r = torch.relu(w)
        return r / (r.sum(dim=0, keepdim=True) + 1e-4)

    def darknet_params(self) -> list[Tensor]:
        # Darknet stores [n+1] (per_feature) or [(n+1)*c] (per_channel), input-major as our (n+1, c) parameter.
        return [] if self.weights is None else [self.weights]


def _add_flat_prefix(out: Tensor, ref: Tensor, scale: Tensor | None = None) -> Tensor:
    """Add ``ref`` to ``out`` over the first min(len) elements of each flattened sample, as shortcut_multilayer_cpu.

    ``scale`` (``1 x C_out x 1 x 1`` or ``1 x 1 x 1 x 1``) weighs ``ref`` by the *output* element's channel, as
    Darknet indexes the weights by the output position, whatever ``ref``'s own channels or size."""
    if ref.shape == out.shape:
        return out + (ref if scale is None else ref * scale)
    b = out.shape[0]
    flat_out, flat_ref = out.reshape(b, -1), ref.reshape(b, -1)
    n = min(flat_out.shape[1], flat_ref.shape[1])
    add = flat_ref[:, :n]
    if scale is not None:
        add = add * scale.expand(1, *out.shape[1:]).reshape(1, -1)[:, :n]
    return torch.cat([flat_out[:, :n] + add, flat_out[:, n:]], dim=1).reshape(out.shape)


class Sam(nn.Module):
    """``[sam]`` spatial attention: ``act(x * from)`` element-wise."""

    def __init__(self, source: int, activation: str) -> None:
        super().__init__()
        self.sources = (source,)
        self.act = Activation(activation)

    def forward(self, x: Tensor, refs: list[Tensor]) -> Tensor:
        return self.act(x * refs[0])


class ScaleChannels(nn.Module):
    """``[scale_channels]`` (squeeze-excitation): ``from[c,y,x] * x[c]``; with ``scale_wh=1``, ``from[c,y,x] * x[y,x]``.

    Both are the same broadcast product: ``x`` is ``C x 1 x 1`` or ``1 x H x W``.
    """

    def __init__(self, source: int, activation: str) -> None:
        super().__init__()
        self.sources = (source,)
        self.act = Activation(activation)

    def forward(self, x: Tensor, refs: list[Tensor]) -> Tensor:
        return self.act(refs[0] * x)
