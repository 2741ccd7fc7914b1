"""``[convolutional]`` and ``[connected]``: the only layers with learnt weights in published Darknet cfgs."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from darknet_torch.model.activations import Activation

# Darknet's batchnorm: eps 1e-5 inside the sqrt (normalize_cpu), rolling averages updated with factor 0.01.
BN_EPS = 1e-5
BN_MOMENTUM = 0.01


class ConvBlock(nn.Module):
    """Convolution, optional batch norm, activation: one Darknet ``[convolutional]`` section.

    With ``batch_normalize=1`` Darknet has no conv bias: the stored ``biases`` are the BN shift. :meth:`fuse` folds the
    BN into a cached kernel used only in eval mode, so the unfused parameters stay the source of truth (saving a fused
    model still writes Darknet's layout). The cache keeps the tensors it was folded from with their version counters and
    refolds when one was changed in place (``load_state_dict``, a weights file, an optimizer step); a move or cast
    (``.to()``/``.double()``), ``share`` or ``load_state_dict(assign=True)`` drops it. So it is never stale, and an
    unchanged model folds once: the per-forward check reads five version counters (0.2 ms per yolov4 forward, where
    rebuilding the parameter list took 3.4 ms).
    """

    def __init__(self, in_channels: int, filters: int, size: int, stride: tuple[int, int], padding: int,
                 dilation: int, groups: int, batch_normalize: bool, activation: str) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, filters, size, stride=stride, padding=padding * dilation,
                              dilation=dilation, groups=groups, bias=not batch_normalize)
        self.bn = nn.BatchNorm2d(filters, eps=BN_EPS, momentum=BN_MOMENTUM) if batch_normalize else None
        self.act = Activation(activation)
        self.fuse_bn = False
        self._folded: tuple[Tensor, Tensor] | None = None
        self._folded_from: tuple[tuple[Tensor, ...], tuple[int, ...]] = ((), ())  # the tensors folded, their versions
        self.shared_with: int | None = None  # share_index: the layer whose parameters this one uses
        self.register_load_state_dict_post_hook(_drop_fold)  # load_state_dict(assign=True) puts in new tensors

    def share(self, source: "ConvBlock", index: int) -> None:
        """Use ``source``'s kernel, bias and batch norm (``share_index``), keeping this layer's geometry."""
        self.conv.weight = source.conv.weight
        self.conv.bias = source.conv.bias
        self.bn = source.bn
        self.shared_with = index
        self._folded = None

    def forward(self, x: Tensor) -> Tensor:
        if self.fuse_bn and not self.training:
            weight, bias = self.fused
            c = self.conv
            return self.act(F.conv2d(x, weight, bias, c.stride, c.padding, c.dilation, c.groups))
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return self.act(x)

    def darknet_params(self) -> list[Tensor]:
        """Tensors in ``.weights`` order: biases, [scales, rolling mean, rolling variance], weights (none when the
        parameters are another layer's, as Darknet skips ``share_layer`` convolutions)."""
        return [] if self.shared_with is not None else self.layer_params()

    @torch.no_grad()
    def folded(self) -> tuple[Tensor, Tensor]:
        """(kernel, bias) with the batch norm folded in (Darknet's ``fuse_conv_batchnorm``), from the current
        parameters; without batch norm the parameters themselves (detached, not copied)."""
        if self.bn is None:
            return self.conv.weight.detach(), self.conv.bias.detach()
        scale = self.bn.weight / torch.sqrt(self.bn.running_var + self.bn.eps)
        weight = self.conv.weight * scale.reshape(-1, 1, 1, 1)
        bias = self.bn.bias - self.bn.running_mean * scale
        return weight.detach(), bias.detach()

    def layer_params(self) -> list[Tensor]:
        """``.weights`` order whether or not shared: what :meth:`folded` reads, unlike :meth:`darknet_params`."""
        if self.bn is None:
            return [self.conv.bias, self.conv.weight]
        return [self.bn.bias, self.bn.weight, self.bn.running_mean, self.bn.running_var, self.conv.weight]

    @property
    def fused(self) -> tuple[Tensor, Tensor] | None:
        """The folded (kernel, bias) after :meth:`fuse`, refolded if the parameters changed since; else None."""
        if not self.fuse_bn:
            return None
        sources, versions = self._folded_from
        if self._folded is None or tuple(t._version for t in sources) != versions:
            sources = tuple(self.layer_params())
            self._folded, self._folded_from = self.folded(), (sources, tuple(t._version for t in sources))
        return self._folded

    def _apply(self, fn, recurse: bool = True):
        """``.to()``, ``.double()``, ``.cuda()``...: the parameters move or change type, so the fold is redone."""
        self._folded = None
        return super()._apply(fn, recurse)

    def fuse(self) -> None:
        """Run eval mode on the folded kernel (:meth:`folded`); changes results by ~1e-6."""
        self.fuse_bn = True

    def unfuse(self) -> None:
        self.fuse_bn = False
        self._folded = None


def _drop_fold(block: ConvBlock, _incompatible_keys) -> None:
    block._folded = None


class Connected(nn.Module):
    """``[connected]``: a fully connected layer on the flattened input, output shaped ``(out, 1, 1)``."""

    def __init__(self, inputs: int, outputs: int, batch_normalize: bool, activation: str) -> None:
        super().__init__()
        self.linear = nn.Linear(inputs, outputs, bias=not batch_normalize)
        self.bn = nn.BatchNorm1d(outputs, eps=BN_EPS, momentum=BN_MOMENTUM) if batch_normalize else None
        self.act = Activation(activation)

    def forward(self, x: Tensor) -> Tensor:
        x = self.linear(x.flatten(1))
        if self.bn is not None:
            x = self.bn(x)
        return self.act(x)[:, :, None, None]

    def darknet_params(self) -> list[Tensor]:
        """``.weights`` order: biases, weights[out][in], then (with BN) scales, rolling mean, rolling variance."""
        if self.bn is None:
            return [self.linear.bias, self.linear.weight]
        return [self.bn.bias, self.linear.weight, self.bn.weight, self.bn.running_mean, self.bn.running_var]
