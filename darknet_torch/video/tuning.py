"""How many threads the video pipeline's forward pass gets, chosen from the pipeline's own measured speed.

The forward pass shares the cores with the reader and output threads (decoding, resizing, NMS, drawing, encoding:
~10 CPU-ms per 640x480 frame).  Which split is faster depends on how long the forward takes next to that side work,
so neither choice is right for every model and mode.  On 2 cores, shared with other engineers' jobs
(benchmarks/README.md, "Video"): yolov3-tiny ``--fast exact`` (27 ms forward) ran at 32 frames/s with 2 forward
threads and 22 with 1; ``--fast bf16`` (13 ms) at 55 with 2 and 62 with 1 (load average ~3.5), and at 6-9 with 2
and 43-48 with 1 while a heavier load came and went (each layer's OpenMP barrier waits for whichever of the
forward's threads the kernel has just descheduled).
:class:`ForwardThreads` therefore tries both (all cores, one fewer) on the first batches, alternating, and keeps the
one whose batches went through the whole pipeline faster.  (On all cores a file's side work takes turns with the
forward instead of competing with it: :mod:`darknet_torch.video.turns`.)  The trial is short (one warm-up batch,
then two batches per candidate) because half its batches run at the slower count (yolov3-tiny exact is 1.5x slower
on one thread), which a short video feels.  The trial runs only where the thread count does not change the
network's outputs (:func:`differs_on_other_counts`, checked on the first batch): on the AVX-512 hosts
yolov3-tiny's forward was bit-identical on 1 and 2 threads (exact and bf16), but on an AVX2 host the plain
network's outputs at 1 and 2 threads differ by up to 3e-4, and a trial whose choice depends on timing would then
make the detections differ from run to run.

The right choice changes when other work starts or stops on the machine (a neighbour holding one of 2 cores slowed a
spin-waiting 2-thread forward from ~27 to ~500 ms a frame: its OpenMP barriers wait for the descheduled thread, and
the waiting policy is fixed when torch loads), so the trial is
run again when the chosen count's recent batches are :data:`SLOWER` times slower than in its trial, and every
``retrial_every`` batches (a load that went away; two batches on the other count cost a long video ~1 %).
"""
from __future__ import annotations

import statistics
import time
from collections import deque
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from darknet_torch.runtime import torch_threads

#: The chosen count's last batches this many times slower (median) than in its trial: try again.
SLOWER = 1.5


def differs_on_other_counts(forward: Callable[[Tensor], Tensor], inputs: Tensor, output: Tensor,
                            counts: Sequence[int]) -> bool:
    """Whether ``forward(inputs)`` on any of the thread ``counts`` differs (any bit) from ``output``, which it gave
    on torch's current count; that count is restored.

    oneDNN and ATen split some reductions by thread, so the summation order (the last bits of float32 results) can
    depend on the count, and ATen's element-wise exp-based ops (sigmoid in the heads) compute each thread's last
    values on a scalar path that can round differently; both depend on the CPU's kernels and the shapes, and one
    input that differs proves it.
    """
    for count in counts:
        with torch_threads(count), torch.inference_mode():
            if not torch.equal(forward(inputs), output):
                return True
    return False


def candidates(cores: int) -> list[int]:
    """The thread counts to try on ``cores`` (torch's threads): all of them, and one fewer (a core left to the
    reader and output threads)."""
    return [cores, cores - 1] if cores > 1 else [1]


class ForwardThreads:
    """The forward's thread count for each batch: a trial of ``trials`` batches per candidate (alternating, after
    ``warmup`` untimed batches), then the candidate with the lowest median seconds per frame, until the next trial
    (one candidate: no trial): when its last ``trials + 1`` batches took :data:`SLOWER` times its trial's median, or
    after ``retrial_every`` batches.

    Call :meth:`threads` before each batch's forward and :meth:`done` after it (with its frame count).  A batch's
    time runs from the previous :meth:`done` to this one, so it includes waiting for the reader and for room in the
    output queue: it measures the pipeline's throughput, not the forward's alone.
    """

    def __init__(self, candidates: list[int], trials: int = 2, warmup: int = 1, retrial_every: int = 150) -> None:
        self.candidates = list(dict.fromkeys(max(1, n) for n in candidates))
        self.trials, self.warmup, self.retrial_every = trials, warmup, retrial_every
        self.seconds_per_frame: dict[int, list[float]] = {n: [] for n in self.candidates}
        self.chosen: int | None = self.candidates[0] if len(self.candidates) == 1 else None
        #: How many trials were run (the first one included).
        self.trials_run = 0 if self.chosen else 1
        self._batches = 0
        self._trial_start = warmup  # batch index where the current trial's alternation starts
        self._chosen_at = 0
        self._chosen_median = 0.0  # the chosen count's median seconds per frame in its trial
        self._recent: deque[float] = deque(maxlen=trials + 1)
        self._last = time.perf_counter()

    def threads(self) -> int:
        """The thread count for the next batch."""
        if self.chosen is not None:
            return self.chosen
        if self._batches < self.warmup:
            return self.candidates[0]
        return self.candidates[(self._batches - self._trial_start) % len(self.candidates)]

    def done(self, frames: int) -> None:
        """Record the batch just run with :meth:`threads`'s count; choose once every candidate had its trial, and
        start a new trial when the choice got slow or old."""
        now = time.perf_counter()
        seconds = (now - self._last) / frames if frames else None
        if self.chosen is None:
            if self._batches >= self.warmup and seconds is not None:
                self.seconds_per_frame[self.threads()].append(seconds)
                if all(len(times) >= self.trials for times in self.seconds_per_frame.values()):
                    medians = {n: statistics.median(times) for n, times in self.seconds_per_frame.items()}
                    self.chosen = min(self.candidates, key=medians.__getitem__)
                    self._chosen_median = medians[self.chosen]
                    self._chosen_at = self._batches + 1
                    self._recent.clear()
        elif len(self.candidates) > 1 and seconds is not None:
            self._recent.append(seconds)
            slow = (len(self._recent) == self._recent.maxlen
                    and statistics.median(self._recent) > SLOWER * self._chosen_median)
            if slow or self._batches + 1 - self._chosen_at >= self.retrial_every:
                self._start_trial(self._batches + 1)
        self._batches += 1
        self._last = now

    def keep(self, count: int) -> None:
        """Use ``count`` from now on, without trials (e.g. when the other counts change the outputs)."""
        self.candidates, self.chosen = [count], count
        self.trials_run = 0

    def _start_trial(self, batch: int) -> None:
        """Alternate the candidates again from ``batch`` on (no warm-up: the forward is warm)."""
        self.chosen, self._trial_start = None, batch
        self.seconds_per_frame = {n: [] for n in self.candidates}
        self.trials_run += 1
