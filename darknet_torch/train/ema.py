"""Darknet's exponential moving average of the weights (``[net] ema_alpha``).

AlexeyAB network.c ``train_network_waitkey``: from iteration ``max_batches/2`` on, after each update, the EMA is
initialised with the current weights (``ema_update(net, 0)``) and then updated ``ema = alpha*ema + (1-alpha)*w``
until iteration ``max_batches - 1000``, where it is copied into the network (``ema_apply``) and training continues
from it.  Only ``[convolutional]`` layers take part, with their weights, biases and batch-norm scales (not the rolling
statistics).  So with ``max_batches <= 2000`` the apply point comes before the start and the EMA only ever holds the
weights of iteration ``max_batches/2`` - Darknet's behaviour, kept.  The EMA is written as ``<cfg>_ema.weights``.
A resumed run restores only the average: ``ema_alpha`` and the two points follow the cfg it resumes with.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch
from torch import Tensor

from darknet_torch.model.darknet import Darknet
from darknet_torch.model.layers.conv import ConvBlock

log = logging.getLogger(__name__)


class DarknetEma:
    """EMA of ``model``'s convolution parameters on Darknet's schedule; call :meth:`step` after every update."""

    def __init__(self, model: Darknet, alpha: float, max_batches: int) -> None:
        self.alpha = alpha
        self.start = max_batches // 2
        self.apply_at = max_batches - 1000
        self.tensors: list[Tensor] = [p for m in model.modules() if isinstance(m, ConvBlock) for p in m.parameters()]
        self.shadow: list[Tensor] | None = None

    @property
    def initialized(self) -> bool:
        return self.shadow is not None

    @torch.no_grad()
    def step(self, iteration: int) -> str | None:
        """Darknet's EMA action after the update completing ``iteration``: ``"init"``, ``"update"``, ``"apply"`` or
        ``None`` (nothing to do yet / any more)."""
        if iteration < self.start:
            return None
        action = None
        if self.shadow is None:
            self.shadow = [t.detach().clone() for t in self.tensors]
            action = "init"
        if iteration == self.apply_at:
            for tensor, average in zip(self.tensors, self.shadow):
                tensor.copy_(average)
            return "apply"
        if iteration < self.apply_at:
            keep = float(np.float32(self.alpha))
            take = float(np.float32(1) - np.float32(self.alpha))  # (1 - ema_alpha) in C float
            for average, tensor in zip(self.shadow, self.tensors):
                average.mul_(keep).add_(tensor.detach(), alpha=take)
            return action or "update"
        return action

    @contextmanager
    def swapped_in(self) -> Iterator[None]:
        """Temporarily put the EMA into the model (to save ``_ema.weights`` or evaluate it); restores on exit."""
        if self.shadow is None:
            raise RuntimeError("EMA is not initialised yet")
        with torch.no_grad():
            live = [t.detach().clone() for t in self.tensors]
            for tensor, average in zip(self.tensors, self.shadow):
                tensor.copy_(average)
            try:
                yield
            finally:
                for tensor, saved in zip(self.tensors, live):
                    tensor.copy_(saved)

    def state_dict(self) -> dict:
        """Plain tensors and numbers only (loadable with ``torch.load(weights_only=True)``)."""
        return {"alpha": self.alpha, "start": self.start, "apply_at": self.apply_at, "shadow": self.shadow}

    def load_state_dict(self, state: dict, source: str = "training state") -> None:
        """Restore the average only: ``alpha``, the start and the apply point stay the cfg's (``ema_alpha``,
        ``max_batches``), which a resumed run may have changed; a warning names the saved values that differ."""
        shadow = state["shadow"]
        if shadow is not None:
            if len(shadow) != len(self.tensors) or any(s.shape != t.shape for s, t in zip(shadow, self.tensors)):
                raise ValueError("EMA state does not match the model's convolution parameters")
            shadow = [s.to(t.device, t.dtype) for s, t in zip(shadow, self.tensors)]
        saved = {key: state[key] for key in ("alpha", "start", "apply_at")}
        if saved != {"alpha": self.alpha, "start": self.start, "apply_at": self.apply_at}:
            log.warning("%s: the EMA was saved with alpha=%g, start %d, applied at %d; the cfg now gives alpha=%g, "
                        "start %d, applied at %d, which are used (the saved average is kept)", source,
                        saved["alpha"], saved["start"], saved["apply_at"], self.alpha, self.start, self.apply_at)
        self.shadow = shadow
