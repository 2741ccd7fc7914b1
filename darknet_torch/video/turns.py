"""Turn-taking between the forward pass and the video pipeline's side work, for a forward that uses every core.

A forward on all cores runs an OpenMP team whose every layer ends in a barrier.  When the reader or output thread
(decoding, resizing, NMS, drawing, encoding) takes a core meanwhile, the kernel deschedules one of the team's
threads and the others spin at the next barrier until it is back: the side work costs the forward about twice its
own CPU time.  Measured on 2 cores (yolov3-tiny ``--fast exact``, 90 frames of 640x480, interleaved runs,
benchmarks/README.md "Video"): the same pipeline reached 0.73 of the bare forward's frames/s with the side threads
competing and 0.83 with them running only while the forward waits (``SCHED_IDLE``, which cannot be used: it starves
them behind any other process on a shared machine, and an unprivileged thread cannot switch back).
:class:`CoreTurns` gives that effect cooperatively: side work runs in items (one frame's decoding and resizing, one
frame's outputs) that start only while no forward runs or waits, and a forward starts once the items in progress
end.  The side items of a batch then run on all cores in parallel with each other, between forward passes.

With fewer forward threads than cores (the other choice of :mod:`darknet_torch.video.tuning`) the side work has a
core of its own and the turns are off (:attr:`CoreTurns.enabled`): everything overlaps.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator


class CoreTurns:
    """Forward passes and side items never run at the same time while :attr:`enabled` (a writer-preferring lock:
    a waiting forward holds back new side items, so two side threads cannot keep it out)."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._changed = threading.Condition()
        self._forward = False  # a forward runs or waits for its turn
        self._side_items = 0

    @contextmanager
    def forward(self) -> Iterator[None]:
        """The forward pass's turn: waits for the side items in progress (none start meanwhile)."""
        try:
            with self._changed:
                self._forward = True
                self._changed.wait_for(lambda: not self.enabled or self._side_items == 0)
            yield
        finally:  # also when the wait is interrupted (Ctrl-C): the side threads must not wait for a forward forever
            with self._changed:
                self._forward = False
                self._changed.notify_all()

    @contextmanager
    def side(self) -> Iterator[None]:
        """One item of side work: starts when no forward runs or waits."""
        with self._changed:
            self._changed.wait_for(lambda: not self.enabled or not self._forward)
            self._side_items += 1
        try:
            yield
        finally:
            with self._changed:
                self._side_items -= 1
                if self._side_items == 0:  # only a forward waits for this count (side items wait on _forward)
                    self._changed.notify_all()

    def set_enabled(self, enabled: bool) -> None:
        """Turns on or off (the forward's thread count changed); waiting threads re-check."""
        with self._changed:
            if enabled != self.enabled:
                self.enabled = enabled
                self._changed.notify_all()
