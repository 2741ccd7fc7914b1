"""Darknet's multi-scale training: a new network size every 10 iterations (``train_detector``, src/detector.c).

With ``random`` set on the last detection layer, Darknet draws ``random_val = rand_scale(coef)`` (``coef`` = 1.4 for
``random=1``, else ``random`` itself) and sets ``dim = roundl(random_val * init / resize_step + 1) * resize_step`` for
both sides (the ``+ 1`` biases sizes one step up: 416 with ``random=1`` gives 320..608, never 416 from an upward draw);
a downward draw that still came out larger than the initial size falls back to the initial size. The first resize of
a run and every resize in the last 100 iterations use the largest size (Darknet checks memory at the start and
settles batch-norm statistics at the end).

Differences, deliberate: Darknet resizes when its process-local counter hits a multiple of 10 and uses the largest
size at the first resize *of each process*; here the size is a pure function of ``(seed, iteration // 10)`` and only
the block containing iteration 0 is forced to the largest size, so a resumed run sees exactly the sizes of an
uninterrupted one. ``dynamic_minibatch`` (batch size following the input area) is not reproduced.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from darknet_torch.config.net import schema_default
from darknet_torch.data.augment_color import rand_scale
from darknet_torch.errors import CfgError

#: Darknet draws a new network size every this many iterations.
RESIZE_PERIOD = 10
#: Darknet's ``rand_scale`` limit for ``random=1``.
DEFAULT_RANDOM_COEF = 1.4
#: The last iterations use the largest size (Darknet: ``iteration > max_batches - 100``).
FINAL_MAX_SIZE_ITERATIONS = 100
# Stream tag keeping the size draws independent of the sample draws made from the same seed.
_SIZE_STREAM = 0x51_2E


def _round_half_away(value: np.float32) -> int:
    """C ``roundl`` of a positive float32 (exact: the float32 value is representable in float64)."""
    return int(np.floor(np.float64(value) + 0.5))


def _scaled_dim(init: int, scale: np.float32, step: int) -> int:
    """``roundl(scale * init / step + 1) * step`` in Darknet's float32 arithmetic."""
    f = np.float32
    return _round_half_away(scale * f(init) / f(step) + f(1)) * step


@dataclass(frozen=True)
class MultiScale:
    """The network-size schedule of one training run.

    ``init_w``/``init_h``: ``[net]`` width/height; ``random``: the last detection layer's ``random`` (0 = fixed size);
    ``resize_step``: ``[net] resize_step`` (Darknet's default 32); ``max_batches``: ``[net] max_batches`` (0 = unknown,
    then the end-of-training rule is not applied); ``stride``: if given, the network's total stride, which every size
    must be a multiple of (the model's routes and upsamplings need it; Darknet does not check).
    """

    init_w: int
    init_h: int
    random: float = 0.0
    resize_step: int = int(schema_default("resize_step"))
    max_batches: int = 0
    stride: int | None = None

    def __post_init__(self) -> None:
        if self.init_w <= 0 or self.init_h <= 0:
            raise CfgError(f"network size {self.init_w}x{self.init_h} must be positive ([net] width/height)")
        if self.resize_step <= 0:
            raise CfgError(f"resize_step={self.resize_step} must be a positive integer")
        if self.random < 0:
            raise CfgError(f"random={self.random} must be >= 0 (0 = fixed network size)")
        if self.stride is not None and self.random and self.resize_step % self.stride:
            raise CfgError(f"resize_step={self.resize_step} is not a multiple of the network stride {self.stride}: "
                           f"multi-scale sizes would not fit the network (set resize_step to a multiple of "
                           f"{self.stride} or random=0)")

    @property
    def coef(self) -> float:
        """Darknet's ``rand_coef``: 1.4 for ``random=1``, else ``random``."""
        return DEFAULT_RANDOM_COEF if self.random == 1.0 else self.random

    def largest(self) -> tuple[int, int]:
        """The size used at the start and the end of training: ``roundl(coef * init / step + 1) * step``."""
        coef = np.float32(self.coef)
        return (max(self.resize_step, _scaled_dim(self.init_w, coef, self.resize_step)),
                max(self.resize_step, _scaled_dim(self.init_h, coef, self.resize_step)))

    def size_at(self, iteration: int, seed: int) -> tuple[int, int]:
        """Network ``(width, height)`` for ``iteration`` (0-based count of finished iterations)."""
        if not self.random:
            return self.init_w, self.init_h
        block = iteration // RESIZE_PERIOD
        start = block * RESIZE_PERIOD
        if block == 0 or (self.max_batches and start > self.max_batches - FINAL_MAX_SIZE_ITERATIONS):
            return self.largest()
        rng = np.random.default_rng((seed, _SIZE_STREAM, block))
        scale = np.float32(rand_scale(self.coef, rng))
        dim_w = _scaled_dim(self.init_w, scale, self.resize_step)
        dim_h = _scaled_dim(self.init_h, scale, self.resize_step)
        if scale < 1 and (dim_w > self.init_w or dim_h > self.init_h):
            dim_w, dim_h = self.init_w, self.init_h
        return max(self.resize_step, dim_w), max(self.resize_step, dim_h)
