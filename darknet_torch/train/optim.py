"""Darknet's training settings from ``[net]``, its SGD as a ``torch.optim.SGD``, and its weight initialisation.

Darknet's update (AlexeyAB src/convolutional_layer.c ``update_convolutional_layer``, called by network.c
``update_network`` with ``batch = mini_batch * subdivisions``) keeps ``v`` = the *negative* summed gradient of the
iteration and does, per layer::

    v -= decay * batch * w          # weights only: never biases, never batch-norm scales
    w += (rate * layer_lr / batch) * v
    v *= momentum

which is ``torch.optim.SGD(lr=rate*layer_lr/batch, momentum, dampening=0, weight_decay=decay*batch)`` on the summed (not
averaged) gradients, with weight decay only on the "weights" arrays (conv kernels, ``[connected]`` matrices, ``[local]``
and ``[shortcut]`` weights), never on biases (``[local]``'s is 2-D) or batch-norm parameters. ``learning_rate=`` in a
layer section is that layer's ``learning_rate_scale``. ``stopbackward=1`` (parser.c ``last_stop_backward``, network.c
``backward_network``): the layers before the last marked one are not trained at all (``train = 0``), and the marked
layer itself gets no gradient (the backward loop breaks *at* it) but is still updated, so its weights only decay. With W
data-parallel processes Darknet multiplies the rate by W (``nets[k].learning_rate *= ngpus`` in detector.c) and averages
the processes' weights; DDP averages gradients, so ``lr = rate*W/batch`` gives the same step as Darknet on the sum of
all processes' gradients.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from darknet_torch.config.net import NetSettings
from darknet_torch.config.sections import Section
from darknet_torch.errors import CfgError
from darknet_torch.model.darknet import Darknet
from darknet_torch.model.layers.conv import Connected, ConvBlock
from darknet_torch.train.schedule import LrSchedule

log = logging.getLogger(__name__)

# [net] keys Darknet reads for training features darknet_torch does not have; reported once when set.
_NET_KEYS_NOT_APPLIED = {
    "adam": "Adam is not implemented; SGD with momentum is used",
    "B1": "Adam only", "B2": "Adam only", "eps": "Adam only",
    "loss_scale": "AMP's dynamic GradScaler replaces it on CUDA",
    "track": "tracking/sequence training is not implemented",
    "time_steps": "recurrent training is not implemented",
    "augment_speed": "tracking only", "sequential_subdivisions": "tracking only", "seq_scales": "tracking only",
    "try_fix_nan": "not implemented (a non-finite loss stops training with a message)",
    "weights_reject_freq": "not implemented", "equidistant_point": "not implemented",
    "badlabels_rejection_percentage": "not implemented", "num_sigmas_reject_badlabels": "not implemented",
    "use_cuda_graph": "not implemented", "dynamic_minibatch": "not implemented",
    "optimized_memory": "Darknet GPU memory option", "workspace_size_limit_MB": "Darknet cuDNN option",
    "contrastive": "not implemented", "contrastive_jit_flip": "not implemented", "contrastive_color": "not implemented",
    "unsupervised": "not implemented", "attention": "not implemented", "adversarial_lr": "not implemented",
    "show_receptive_field": "display option",
}
# Per-layer training keys (parse_network_cfg_custom) darknet_torch does not apply.
_LAYER_KEYS_NOT_APPLIED = ("dont_update", "burnin_update", "train_only_bn", "clip", "onlyforward")
# Head keys Darknet's loss reads that darknet_torch's does not.
_HEAD_KEYS_NOT_APPLIED = {
    "counters_per_class": "the per-class multipliers of the class and box deltas are not implemented",
    "map": "remapping truth class ids through a .map file is not implemented",
}


@dataclass(frozen=True)
class TrainSettings:
    """What Darknet's training loop reads from ``[net]``: one iteration is ``batch`` images in ``subdivisions``
    mini-batches of ``mini_batch`` images (Darknet's ``net.batch /= subdivisions``, rounding down)."""

    batch: int
    subdivisions: int
    max_batches: int
    momentum: float
    decay: float
    burn_in: int
    ema_alpha: float
    schedule: LrSchedule

    @property
    def mini_batch(self) -> int:
        return self.batch // self.subdivisions

    @classmethod
    def from_net(cls, net: NetSettings | Section) -> "TrainSettings":
        """Validate the ``[net]`` settings for training (``model.net``; a section is read with
        :meth:`NetSettings.of`); errors name the cfg line."""
        net = NetSettings.of(net)
        batch, subdivisions, mini = net.batch, net.subdivisions, net.mini_batch
        if subdivisions < 1:
            raise net.error(f"subdivisions={subdivisions} must be >= 1", "subdivisions")
        if mini < 1:
            raise net.error(f"batch={batch} with subdivisions={subdivisions} leaves no image per mini-batch "
                            f"(batch/subdivisions must be >= 1)", "batch")
        if mini * subdivisions != batch:
            log.warning("%s: batch=%d is not a multiple of subdivisions=%d; Darknet trains %d images per iteration",
                        net.where("batch"), batch, subdivisions, mini * subdivisions)
        if mini * subdivisions == 1:  # detector.c refuses batch=1 for training
            raise net.error("batch=1 cannot train (batch norm needs several images); set e.g. batch=64 "
                            "subdivisions=16", "batch")
        if net.max_batches < 1:
            raise net.error(f"max_batches={net.max_batches} must be >= 1 to train", "max_batches")
        for key, value in (("momentum", net.momentum), ("decay", net.decay)):
            if not (0 <= value < math.inf):
                raise net.error(f"{key}={value} must be a finite number >= 0", key)
        if not 0 <= net.ema_alpha < 1:
            raise net.error(f"ema_alpha={net.ema_alpha} must be in [0, 1)", "ema_alpha")
        return cls(batch=mini * subdivisions, subdivisions=subdivisions, max_batches=net.max_batches,
                   momentum=net.momentum, decay=net.decay, burn_in=net.burn_in, ema_alpha=net.ema_alpha,
                   schedule=LrSchedule.from_net(net))


def keys_not_applied(model: Darknet) -> list[str]:
    """One message per training key set in the cfg that darknet_torch cannot apply (for the caller to log once)."""
    net = model.hyperparams
    messages = [f"{net.where(key)}={net[key]}: not applied ({why})"
                for key, why in _NET_KEYS_NOT_APPLIED.items() if net.has(key) and net[key]]
    for info in model.layer_infos:
        sec = info.section
        for key in _LAYER_KEYS_NOT_APPLIED:
            if sec.has(key) and sec[key]:
                messages.append(f"{sec.where(key)}={sec[key]}: not applied (per-layer update control is not "
                                f"implemented)")
        for key, why in _HEAD_KEYS_NOT_APPLIED.items():
            if sec.name in ("yolo", "Gaussian_yolo", "region") and sec.has(key):
                value = ",".join(map(str, sec[key])) if isinstance(sec[key], list) else sec[key]
                messages.append(f"{sec.where(key)}={value}: not applied ({why})")
        if sec.has("stopbackward") and sec["stopbackward"] > 1:
            messages.append(f"{sec.where('stopbackward')}={sec['stopbackward']}: only stopbackward=1 (freeze the "
                            f"layers before, no gradient for this one) is applied")
    return messages


def frozen_layer_count(model: Darknet) -> int:
    """Index of the last ``stopbackward=1`` layer (0 if none): the layers before it are not trained
    (parse_network_cfg_custom's ``last_stop_backward`` sets their ``train = 0``); the layer itself is trained
    without a gradient (see :func:`param_groups`)."""
    marks = [info.index for info in model.layer_infos if info.section.get("stopbackward") == 1]
    return marks[-1] if marks else 0


def _no_gradient(grad: Tensor) -> Tensor:
    """Hook for the ``stopbackward`` layer's parameters: Darknet's backward loop stops before it, so its updates hold
    no gradient; SGD then applies only weight decay and momentum, as update_network does for it."""
    return torch.zeros_like(grad)


def is_decayed(name: str, owner: nn.Module) -> bool:
    """Whether parameter ``name`` of module ``owner`` gets weight decay, by its role as in Darknet's update functions:
    the ``weights`` arrays (kernels, ``[connected]`` matrices, ``[local]`` and ``[shortcut]`` weights) do; biases
    (whatever their shape: ``[local]``'s has one per output element) and batch-norm scales and shifts never do."""
    return name != "bias" and not isinstance(owner, (nn.BatchNorm1d, nn.BatchNorm2d))


def param_groups(model: Darknet, settings: TrainSettings, world_size: int = 1) -> list[dict]:
    """Optimizer groups by (layer ``learning_rate`` scale, decayed or not), Darknet's per-layer update as SGD groups.

    Each group carries ``lr_scale`` = layer scale * world_size / batch, so :func:`schedule.set_lr` with Darknet's rate
    gives each group its Darknet step size.  With ``stopbackward=1``, the parameters of the layers before the mark get
    ``requires_grad=False`` and no group; the marked layer's stay in their groups with a hook that zeroes their
    gradient (decay and momentum only, as in Darknet).
    """
    frozen = frozen_layer_count(model)
    groups: dict[tuple[float, bool], list[nn.Parameter]] = {}
    for info, module in zip(model.layer_infos, model.module_list):
        if getattr(module, "shared_with", None) is not None:  # share_index: the parameters are another layer's
            continue
        scale = float(info.section["learning_rate"])  # every layer has it (COMMON_LAYER_KEYS)
        for param, decayed in _params_by_role(module):
            if info.index < frozen:
                param.requires_grad_(False)
                continue
            if frozen > 0 and info.index == frozen:
                param.register_hook(_no_gradient)
            groups.setdefault((scale, decayed), []).append(param)
    return [{"params": params, "lr_scale": scale * world_size / settings.batch,
             "weight_decay": settings.decay * settings.batch if decayed else 0.0}
            for (scale, decayed), params in groups.items()]


def _params_by_role(module: nn.Module) -> Iterator[tuple[nn.Parameter, bool]]:
    """``module``'s parameters (in ``parameters()`` order, so saved optimizer states still match), each with whether
    Darknet decays it (:func:`is_decayed`)."""
    for owner in module.modules():
        for name, param in owner.named_parameters(recurse=False):
            yield param, is_decayed(name, owner)


def build_optimizer(model: Darknet, settings: TrainSettings, world_size: int = 1) -> torch.optim.SGD:
    """Darknet's SGD for ``model`` (see the module docstring); the lr is set per iteration with ``set_lr``."""
    groups = param_groups(model, settings, world_size)
    if not groups:
        raise CfgError(f"{model.net.where()}: nothing to train (no parameters, or stopbackward freezes all)")
    return torch.optim.SGD(groups, lr=0.0, momentum=settings.momentum, dampening=0.0, nesterov=False)


@torch.no_grad()
def darknet_init_(model: Darknet, generator: torch.Generator) -> None:
    """Initialise for training from scratch as Darknet does: kernels ``uniform(-s, s)`` with ``s = sqrt(2/fan_in)``
    (make_convolutional_layer / make_connected_layer), biases 0, batch-norm scales 1 (rolling statistics reset)."""
    for module in model.modules():
        if isinstance(module, (ConvBlock, Connected)) and getattr(module, "shared_with", None) is None:
            layer = module.conv if isinstance(module, ConvBlock) else module.linear
            fan_in = layer.weight[0].numel()
            bound = math.sqrt(2.0 / fan_in)
            layer.weight.copy_(torch.rand(layer.weight.shape, generator=generator) * (2 * bound) - bound)
            if layer.bias is not None:
                layer.bias.zero_()
            if module.bn is not None:
                module.bn.reset_parameters()
