"""Network slimming's sparsity step (Liu et al. 2017): an L1 penalty on the batch-norm scales, applied in training.

``train --sparsity s`` adds ``s * sign(gamma)``, the subgradient of ``s * sum |gamma|``, to the gradient of every
batch-norm scale that ``export.prune`` can remove, after an iteration's backward passes and before the optimizer
step; ``darknet_torch prune`` then cuts the channels whose ``|gamma|`` the penalty drove towards 0.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch

from darknet_torch.export.prune import prunable_bn_layers
from darknet_torch.model.darknet import Darknet
from darknet_torch.model.layers.conv import ConvBlock


@torch.no_grad()
def bn_l1_subgradient(model: Darknet, s: float, layers: Iterable[int] | None = None) -> None:
    """Add ``s * sign(gamma)`` to the gradient of the BN scales of ``layers`` (default: every BN convolution).

    Call after ``backward`` and before the optimizer step.  ``s`` is in the units of the loss the gradients belong
    to: the paper's ``s`` (1e-4 .. 1e-5) is per image, so with Darknet's loss summed over ``batch`` images and
    ``lr / batch`` steps pass ``s * batch`` (times the AMP scale while the gradients are still scaled).
    """
    modules = model.module_list if layers is None else [model.module_list[i] for i in layers]
    for module in modules:
        if isinstance(module, ConvBlock) and module.bn is not None and module.bn.weight.grad is not None:
            module.bn.weight.grad.add_(torch.sign(module.bn.weight), alpha=s)


class SparsityPenalty:
    """The per-image penalty ``s`` on the BN scales pruning can remove (found once: the graph does not change)."""

    def __init__(self, model: Darknet, per_image: float) -> None:
        self.model, self.per_image = model, per_image
        self.layers = prunable_bn_layers(model)

    def apply(self, batch: int, grad_scale: float = 1.0, world_size: int = 1) -> None:
        """After the iteration's backward passes: Darknet's loss sums ``batch`` images per rank and its rate is
        multiplied by the ranks DDP averages over; ``grad_scale`` is the AMP scale the gradients still carry."""
        bn_l1_subgradient(self.model, self.per_image * batch * grad_scale / world_size, self.layers)
