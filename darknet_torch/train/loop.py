"""The training loop: Darknet's ``train_detector`` iteration by iteration, on torch.

One *iteration* is the cfg's ``batch`` images, fed as ``subdivisions`` mini-batches whose summed loss gradients
accumulate before one optimizer step (Darknet's ``train_network``).  The update that completes iteration ``k`` uses
the schedule's ``rate(k)``; ``seen = k * batch``.  Every decision depends on the absolute iteration only (the data
stream restarts at any iteration from the seed), so a run resumed from ``<cfg>_last.pt`` continues bit for bit.
"""
from __future__ import annotations

import logging
import math
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from typing import Callable, Iterable, Iterator

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from darknet_torch.config.net import schema_default
from darknet_torch.distributed import DistContext, barrier, broadcast_value
from darknet_torch.errors import DarknetError
from darknet_torch.model.darknet import Darknet
from darknet_torch.model.losses import trainable
from darknet_torch.train.chart import TrainingHistory, write_chart
from darknet_torch.train.checkpoint import (CheckpointPaths, restore_rng, rng_state, save_state, save_weights,
                                           stopping_on_write_error)
from darknet_torch.train.distributed import mean_over_ranks, wrap_model
from darknet_torch.train.ema import DarknetEma
from darknet_torch.train.optim import TrainSettings, build_optimizer
from darknet_torch.train.previews import BatchPreviews
from darknet_torch.train.results_log import ResultsLog
from darknet_torch.train.schedule import set_lr
from darknet_torch.train.sparsity import SparsityPenalty

log = logging.getLogger(__name__)

MiniBatch = tuple[Tensor, Tensor]  # images (B, 3, H, W) in [0, 1]; targets (T, 6) [batch_index, class, cx, cy, w, h]
BatchSource = Callable[[int], Iterable[MiniBatch]]  # start iteration -> endless stream of mini-batches
Evaluator = Callable[[Darknet], float]  # model (eval mode) -> mAP@0.5 in [0, 1]

# Logging sums DetectionLoss returns (over the heads, and per head as "<part>/<head>"); box/obj/cls are shown per
# image, iou as iou_sum / count.
_LOGGED_PARTS = ("box", "obj", "cls", "count", "iou_sum")


class DetectionLoss(nn.Module):
    """The network and Darknet's loss summed over its heads: what DDP wraps, so one forward syncs the gradients.

    ``forward(images, targets)`` returns ``(loss, parts)``: the loss summed over the mini-batch and all heads (Darknet
    sums, it does not average) and detached logging sums over the heads: ``box``, ``obj``, ``cls`` (shares of the
    loss), ``count`` (assigned predictions) and ``iou_sum`` (their IoU summed), and the same per head as
    ``box/0``, ``obj/0``, ... (heads in cfg order).  Each head gets its input tensor too,
    so the gradient reaches the conv before it exactly as Darknet's delta (see ``yolo_loss``).
    """

    def __init__(self, model: Darknet) -> None:
        super().__init__()
        self.model = model
        untrainable = [model.layer_infos[i].section.where() for i, head in zip(model.head_indices, model.heads)
                       if not trainable(head)]
        if not model.head_indices or untrainable:
            raise DarknetError(f"cannot train this network: training needs [yolo] heads; the loss of "
                               f"{', '.join(untrainable) or 'a network without detection head'} is not implemented")

    def forward(self, images: Tensor, targets: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        total, head_parts = self.model.compute_loss(images, targets)
        sums = {name: torch.zeros((), device=images.device) for name in _LOGGED_PARTS}
        per_head = {}
        for head, parts in enumerate(head_parts):
            own = {name: parts[name] for name in ("box", "obj", "cls", "count")}
            own["iou_sum"] = parts["iou"] * parts["count"]
            for name, value in own.items():
                sums[name] += value
                per_head[f"{name}/{head}"] = value
        return total, {**sums, **per_head}


@dataclass(frozen=True)
class LoopOptions:
    """How often to save and evaluate (Darknet's defaults are chosen by :func:`darknet_save_every`)."""

    save_every: int = 1000  # <cfg>_<iteration>.weights
    save_last_every: int = 100  # <cfg>_last.weights, <cfg>_ema.weights and the <cfg>_last.pt state
    map_every: int | None = None  # iterations between mAP evaluations; None: no evaluation
    amp: bool = False  # mixed precision: float16 autocast + GradScaler on CUDA, bfloat16 autocast on CPU
    channels_last: bool = False  # NHWC activations and weights (faster convolutions on CPU)
    sparsity: float = 0.0  # network slimming: per-image L1 penalty on batch-norm scales (train.sparsity)
    progress: bool = True
    seed: int = 0
    max_chart_loss: float = schema_default("max_chart_loss")  # [net] max_chart_loss: the chart's loss axis
    chart_seconds: float = 10.0  # redraw the chart at most this often (and after every mAP, and at the end)
    log_every: int = 1  # a results.csv row every N iterations (and at every mAP evaluation)
    tensorboard: bool = False  # mirror results.csv to TensorBoard when it is installed (train() turns it on)


def darknet_save_every(max_batches: int) -> int:
    """Darknet's default period of ``<cfg>_<iteration>.weights``: 1000, or 10000 for runs of 10000+ iterations."""
    return 1000 if max_batches < 10000 else 10000


def darknet_map_every(train_images: int, batch: int, epochs: int = 4) -> int:
    """Darknet's mAP period: every ``epochs`` epochs (``-mAP_epochs``, default 4), at least every 100 iterations."""
    return max(epochs * train_images // batch, 100)


@dataclass
class TrainResult:
    iteration: int
    avg_loss: float
    best_map: float | None
    last_map: float | None


@dataclass
class _Progress:
    """Counters Darknet's train_detector keeps between iterations (all saved in the training state)."""

    iteration: int = 0
    avg_loss: float = -1.0
    best_map: float = -1.0
    last_map: float = -1.0
    iter_map: int = 0
    iter_save: int = 0
    iter_save_last: int = 0

    def restart_counters(self, iteration: int) -> None:
        """Darknet starts its save/mAP counters at the iteration training starts from."""
        self.iteration = self.iter_map = self.iter_save = self.iter_save_last = iteration


class Trainer:
    """Trains ``model`` with Darknet's semantics; see the module docstring.

    ``batches(start_iteration)`` must yield the mini-batches of iteration ``start_iteration + 1`` onwards (each of
    ``settings.mini_batch`` images for this process), deterministically.  ``evaluator`` computes mAP@0.5 when
    ``options.map_every`` is set (rank 0 only).  ``criterion`` defaults to :class:`DetectionLoss`; it must return
    ``(summed loss, parts)``.  ``previews`` saves mosaics of augmented batches (rank 0).
    """

    def __init__(self, model: Darknet, settings: TrainSettings, batches: BatchSource, paths: CheckpointPaths,
                 options: LoopOptions = LoopOptions(), ctx: DistContext = DistContext(),
                 evaluator: Evaluator | None = None, criterion: nn.Module | None = None,
                 ema_alpha: float | None = None, previews: BatchPreviews | None = None) -> None:
        if options.map_every is not None and evaluator is None:
            raise ValueError("map_every needs an evaluator")
        self.model, self.settings, self.batches, self.paths = model, settings, batches, paths
        self.options, self.ctx, self.evaluator = options, ctx, evaluator
        self.previews = previews if ctx.is_main else None
        self.memory_format = torch.channels_last if options.channels_last else torch.contiguous_format
        model.to(memory_format=self.memory_format)  # before DDP registers the parameters
        self.criterion = wrap_model(criterion if criterion is not None else DetectionLoss(model), ctx)
        self.optimizer = build_optimizer(model, settings, ctx.world_size)
        alpha = settings.ema_alpha if ema_alpha is None else ema_alpha
        self.ema = DarknetEma(model, alpha, settings.max_batches) if alpha > 0 else None
        self.sparsity = SparsityPenalty(model, options.sparsity) if options.sparsity else None
        cuda = ctx.device.type == "cuda"
        # CPU autocast computes in bfloat16, whose float32 exponent range needs no loss scaling.
        self.autocast_dtype = torch.float16 if cuda else torch.bfloat16
        self.scaler = torch.amp.GradScaler("cuda", enabled=options.amp and cuda)
        self.history = TrainingHistory()
        self.progress = _Progress()
        self.rate = 0.0  # Darknet's rate of the last update (before the per-group lr_scale)
        self._last_chart = 0.0
        self.results: ResultsLog | None = None  # opened by run() on rank 0, at the start iteration

    # ------------------------------------------------------------------------------------------------ state
    @property
    def iteration(self) -> int:
        return self.progress.iteration

    def start_at(self, iteration: int) -> None:
        """Start from ``iteration`` (e.g. ``seen / batch`` of loaded weights, as Darknet does without ``-clear``)."""
        if not 0 <= iteration < self.settings.max_batches:
            raise DarknetError(f"the weights have already trained {iteration} iterations (seen / batch), which is "
                               f"not below max_batches={self.settings.max_batches}; pass --clear to start again "
                               f"from iteration 0, or raise max_batches")
        self.progress.restart_counters(iteration)

    def state_dict(self) -> dict:
        """Everything needed to continue exactly; tensors and plain Python values only."""
        header = self.model.header
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "ema": self.ema.state_dict() if self.ema else None,
                "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
                "progress": asdict(self.progress), "seen": self.progress.iteration * self.settings.batch,
                "header": [header.major, header.minor, header.revision],
                "history": self.history.state_dict(), "rng": rng_state(),
                "schedule": asdict(self.settings.schedule), "batch": self.settings.batch,
                "seed": self.options.seed, "world_size": self.ctx.world_size}

    def load_state_dict(self, state: dict, source: str = "training state") -> None:
        """Continue from :meth:`state_dict` (e.g. read by ``checkpoint.load_state`` from ``<cfg>_last.pt``)."""
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise DarknetError(f"{source} does not match this cfg/optimizer (was it written for another cfg?): "
                               f"{str(exc).splitlines()[0]}") from exc
        if self.ema is not None and state["ema"] is not None:
            self.ema.load_state_dict(state["ema"], source)
        if self.scaler.is_enabled() and state["scaler"] is not None:
            self.scaler.load_state_dict(state["scaler"])
        if state["schedule"] != asdict(self.settings.schedule):
            log.warning("%s: the cfg's learning-rate schedule differs from the saved one; using the cfg's", source)
        if state["batch"] != self.settings.batch or state["world_size"] != self.ctx.world_size:
            log.warning("%s: saved with batch=%d on %d process(es), now batch=%d on %d: the run will not continue "
                        "exactly", source, state["batch"], state["world_size"], self.settings.batch,
                        self.ctx.world_size)
        self.model.header.major, self.model.header.minor, self.model.header.revision = state["header"]
        self.progress = _Progress(**state["progress"])
        self.history = TrainingHistory.from_state_dict(state["history"])
        restore_rng(state["rng"])
        if self.iteration >= self.settings.max_batches:
            log.warning("%s is at iteration %d, max_batches=%d: nothing left to train", source, self.iteration,
                        self.settings.max_batches)


    # ------------------------------------------------------------------------------------------------ loop
    def run(self, stop_at: int | None = None) -> TrainResult:
        """Train until ``max_batches`` (then write ``_final``), or return after iteration ``stop_at`` as if killed."""
        settings, ctx = self.settings, self.ctx
        self.model.train()
        with torch.random.fork_rng(devices=[]):  # a DataLoader iterator draws its base seed from the global RNG;
            stream = iter(self.batches(self.iteration))  # keep that out of the training RNG so resumes match
        bar = tqdm(total=settings.max_batches, initial=self.iteration, unit="it", dynamic_ncols=True,
                   disable=not (self.options.progress and ctx.is_main))
        if ctx.is_main:
            self.results = ResultsLog(self.paths.results, self.iteration, self.options.log_every,
                                      self.paths.tensorboard if self.options.tensorboard else None)
        try:
            while self.iteration < settings.max_batches:
                if stop_at is not None and self.iteration >= stop_at:
                    return self._result()
                started = time.perf_counter()
                loss, parts, images = self._train_iteration(stream)
                self._after_iteration(loss, parts, images, time.perf_counter() - started, bar)
        finally:
            bar.close()
            if self.results is not None:
                self.results.close()
        if ctx.is_main:
            self._save("final")
        barrier(ctx)
        return self._result()

    def _train_iteration(self, stream: Iterator[MiniBatch]) -> tuple[float, dict[str, float], int]:
        """Accumulate ``subdivisions`` mini-batches, then one update with ``rate(k)``.

        Returns the per-image loss, the shown parts and the images trained (all ranks)."""
        settings, ctx = self.settings, self.ctx
        k = self.iteration + 1
        self.rate = settings.schedule.rate(k, np.random.default_rng((self.options.seed, k)))
        set_lr(self.optimizer, self.rate)
        self.optimizer.zero_grad(set_to_none=True)
        total = torch.zeros((), device=ctx.device)
        parts: dict[str, Tensor] = {}
        images = 0
        for sub in range(settings.subdivisions):
            try:
                inputs, targets = next(stream)
            except StopIteration:
                raise DarknetError(f"the training data ran out during iteration {k}") from None
            if sub == 0 and self.previews is not None and self.previews.wanted():
                self.previews.save(k, inputs, targets)
            inputs = inputs.to(ctx.device, non_blocking=True).contiguous(memory_format=self.memory_format)
            targets = targets.to(ctx.device, non_blocking=True)
            last = sub == settings.subdivisions - 1
            with nullcontext() if last or not ctx.enabled else self.criterion.no_sync():
                with torch.autocast(ctx.device.type, dtype=self.autocast_dtype, enabled=self.options.amp):
                    loss, loss_parts = self.criterion(inputs, targets)
                self.scaler.scale(loss).backward()
            total += loss.detach().float()
            for name, value in loss_parts.items():
                parts[name] = parts[name] + value if name in parts else value
            images += inputs.shape[0]
        if not self.scaler.is_enabled() and not torch.isfinite(total):
            raise DarknetError(f"the loss became {total.item()} at iteration {k} (learning rate {self.rate:.3g}); "
                               f"lower learning_rate or check the labels for degenerate boxes")
        if self.sparsity is not None:
            scale = self.scaler.get_scale() if self.scaler.is_enabled() else 1.0
            self.sparsity.apply(settings.batch, scale, ctx.world_size)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.progress.iteration = k
        if self.ema is not None:
            action = self.ema.step(k)
            if action in ("init", "apply") and ctx.is_main:
                log.info("iteration %d: EMA %s", k, "initialised" if action == "init" else "applied to the weights")
        return (*self._per_image(total, parts, images), images * ctx.world_size)

    def _per_image(self, total: Tensor, parts: dict[str, Tensor], images: int) -> tuple[float, dict[str, float]]:
        """Darknet's printed loss (the iteration's loss / images) and its parts over all ranks (one device sync):
        ``box``, ``obj``, ``cls``, ``iou`` over the heads, then ``box_0``, ``obj_0``, ... per head."""
        values = torch.stack([total, *parts.values()]) / images
        loss, *means = mean_over_ranks(values, self.ctx).tolist()
        sums = dict(zip(parts, means))
        line = {}
        heads = sorted({int(name.split("/")[1]) for name in parts if "/" in name})
        for suffix, label in [("", ""), *((f"/{head}", f"_{head}") for head in heads)]:
            line.update({f"{name}{label}": sums[name + suffix] for name in ("box", "obj", "cls")
                         if name + suffix in sums})
            if "count" + suffix in sums:  # NaN when nothing was assigned (keeps results.csv's columns fixed)
                count = sums["count" + suffix]
                line[f"iou{label}"] = sums["iou_sum" + suffix] / count if count > 0 else math.nan
        return loss, line

    def _after_iteration(self, loss: float, parts: dict[str, float], images: int, seconds: float, bar: tqdm) -> None:
        """Darknet's bookkeeping after ``train_network``: avg loss, mAP, chart, saves."""
        p, options, ctx = self.progress, self.options, self.ctx
        if p.avg_loss < 0 or not math.isfinite(p.avg_loss):
            p.avg_loss = loss
        p.avg_loss = p.avg_loss * 0.9 + loss * 0.1
        k = p.iteration
        self.history.add_loss(k, p.avg_loss, {name: parts[name] for name in ("box", "obj", "cls") if name in parts})
        evaluated = False
        if options.map_every is not None:
            due = max(p.iter_map + options.map_every, self.settings.burn_in)
            if k >= due or k == self.settings.max_batches:
                self._evaluate(bar)
                evaluated = True
        if ctx.is_main:
            self.results.log(k, {"loss": loss, "avg_loss": p.avg_loss, **parts, "lr": self.rate,
                                 "images_per_s": images / max(seconds, 1e-9),
                                 "map": p.last_map if evaluated else None}, evaluated)
            shown = " ".join(f"{name} {value:.3f}" for name, value in parts.items()
                             if "_" not in name and math.isfinite(value))
            best = f" best mAP {100 * p.best_map:.1f}%" if p.best_map >= 0 else ""
            bar.set_postfix_str(f"loss {loss:.3f} avg {p.avg_loss:.3f} {shown} lr {self.rate:.3g} "
                                f"{images / max(seconds, 1e-9):.1f} img/s{best}", refresh=False)
            bar.update(1)
            self._maybe_chart(force=evaluated)
            self._periodic_saves(k)

    def _evaluate(self, bar: tqdm) -> None:
        """mAP@0.5 on ``valid`` with the current weights (rank 0), best weights on a new best (Darknet's ``>=``)."""
        p = self.progress
        p.iter_map = p.iteration
        value = -1.0
        if self.ctx.is_main:
            self.model.eval()
            try:
                with torch.no_grad(), torch.random.fork_rng(devices=[]):  # evaluating must not move training's RNG
                    value = float(self.evaluator(self.model))
            finally:
                self.model.unfuse()
                self.model.train()
        value = broadcast_value(value, self.ctx)
        p.last_map = value
        self.history.add_map(p.iteration, value)
        if value >= p.best_map:
            p.best_map = value
            if self.ctx.is_main:
                self._save("best")
        if self.ctx.is_main:
            bar.write(f"iteration {p.iteration}: mAP@0.5 = {100 * value:.2f} %, best = {100 * p.best_map:.2f} %")
        barrier(self.ctx)

    def _periodic_saves(self, k: int) -> None:
        """Darknet's save rules (train_detector): ``<cfg>_<k>`` every ``save_every``, ``_last`` every
        ``save_last_every`` counted from the start iteration or at multiples; the state file with ``_last``."""
        p, options = self.progress, self.options
        if k >= p.iter_save + options.save_every or k % options.save_every == 0:
            p.iter_save = k
            self._save(k)
        if k >= p.iter_save_last + options.save_last_every or k % options.save_last_every == 0:
            p.iter_save_last = k
            self._save("last")

    def _save(self, tag: str | int) -> None:
        """Write ``<cfg>_<tag>.weights``; with ``last``/``final`` also the EMA weights and the training state.

        Raises:
            CheckpointWriteError: a file cannot be written (stops training; earlier checkpoints are unchanged)."""
        k = self.progress.iteration
        seen = k * self.settings.batch
        with stopping_on_write_error(self.paths.weights(tag), k):
            save_weights(self.model, self.paths.weights(tag), seen)
        if tag in ("last", "final"):
            if self.ema is not None and self.ema.initialized:
                with self.ema.swapped_in(), stopping_on_write_error(self.paths.weights("ema"), k):
                    save_weights(self.model, self.paths.weights("ema"), seen)
            with stopping_on_write_error(self.paths.state, k):
                save_state(self.paths.state, self.state_dict())
            self._maybe_chart(force=True)

    def _maybe_chart(self, force: bool) -> None:
        """Redraw the loss chart; a chart that cannot be written is a warning (it never stops training)."""
        now = time.monotonic()
        if force or now - self._last_chart >= self.options.chart_seconds:
            self._last_chart = now
            try:
                write_chart(self.paths.chart, self.history, self.settings.max_batches, self.options.max_chart_loss,
                            self.paths.base)
            except OSError as exc:
                log.warning("%s: cannot write the chart (%s); training goes on", self.paths.chart,
                            exc.strerror or exc)

    def _result(self) -> TrainResult:
        p = self.progress
        return TrainResult(p.iteration, p.avg_loss, p.best_map if p.best_map >= 0 else None,
                           p.last_map if p.last_map >= 0 else None)
