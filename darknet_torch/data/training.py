"""Training data: which images each iteration sees, at which network size, augmented as Darknet does.

Sampling follows ``load_data_detection`` (src/data.c): every image of an iteration, and every extra mosaic/mixup
source, is drawn uniformly *with replacement* from the list (Darknet's ``get_random_paths``), not in epochs.

Determinism: there is no global RNG. The batch sampler derives each iteration's image indices, per-sample seeds and
network size from ``(seed, iteration)`` alone, and the dataset derives each sample's ``numpy`` Generator from
``(seed, sample_seed)``; so the batches from iteration ``k`` on are identical whether the run started at 0 or resumed
at ``k``, with any number of workers.

Bad input: the training set is checked up front (``DarknetDataset.training_report``) (missing images stop training, bad label lines
are listed and skipped). An image that exists but fails to decode during training is logged once per worker process
(path and reason) and replaced by another image chosen from ``(seed, sample_seed, index)``, so a run never dies on
one corrupt file hours in and the replacement is the same on resume.

Multi-GPU: as in Darknet, ``batch`` in ``[net]`` is per GPU. Each iteration draws ``world_size * batch`` samples and
rank ``r`` takes the ``r``-th block, so ranks see disjoint draws of the same iteration at the same network size.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterator, NamedTuple, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from darknet_torch.config.data_files import DataConfig
from darknet_torch.config.net import NetSettings
from darknet_torch.config.sections import Section
from darknet_torch.data.augment import AugmentConfig, augment, draw_source_count
from darknet_torch.data.dataset import DarknetDataset
from darknet_torch.data.images import DEFAULT_MAX_PIXELS, Decoder, load_image
from darknet_torch.data.labels import label_file_for, read_labels
from darknet_torch.data.loaders import make_loader
from darknet_torch.data.multiscale import MultiScale
from darknet_torch.data.report import DataReport
from darknet_torch.errors import CfgError, DataError

log = logging.getLogger(__name__)

#: Unreadable images replaced in a row before the sample gives up (then the data set is mostly broken).
MAX_REPLACEMENTS = 10
# Stream tags: independent generators from one seed for sample order, sample augmentation and replacements.
_ORDER_STREAM, _SAMPLE_STREAM, _REPLACE_STREAM = 0x0D, 0x5A, 0x4E
_SEED_LIMIT = 2**63


class SampleRequest(NamedTuple):
    """One training sample to produce: image ``index`` at network size ``net_w`` x ``net_h``, augmented from
    ``sample_seed`` (a non-negative int)."""

    index: int
    net_w: int
    net_h: int
    sample_seed: int


class TrainDataset(Dataset):
    """Augmented training samples, indexed by :class:`SampleRequest`.

    ``dataset[SampleRequest(index, net_w, net_h, sample_seed)]`` returns ``(image, labels)``: image float32
    ``(3, net_h, net_w)`` RGB in [0, 1]; labels float32 ``(N, 5)`` rows ``class cx cy w h`` relative to the network
    input. Labels come from ``report`` (read once, up front) when given, else are read from the label file for each
    sample (bad lines skipped). ``seed`` must be the sampler's seed or any fixed non-negative int.
    """

    def __init__(self, image_paths: Sequence[str | os.PathLike[str]], num_classes: int, augment_cfg: AugmentConfig,
                 seed: int, decoder: Decoder = "auto", report: DataReport | None = None,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.image_paths = [Path(path) for path in image_paths]
        if not self.image_paths:
            raise DataError("no training images")
        if report is not None and list(report.image_paths) != self.image_paths:
            raise ValueError("the report describes a different image list")
        self.num_classes, self.augment_cfg, self.seed = num_classes, augment_cfg, seed
        self.decoder, self.max_pixels, self.report = decoder, max_pixels, report
        self._unreadable: set[int] = set()  # per process: skip files already known to fail, log them once

    def __len__(self) -> int:
        return len(self.image_paths)

    def labels_of(self, index: int) -> np.ndarray:
        """(N, 5) float32 usable label rows of image ``index``."""
        if self.report is not None:
            return self.report.labels_of(index)
        return read_labels(label_file_for(self.image_paths[index]), self.num_classes).boxes

    def _replacement(self, index: int, sample_seed: int, attempt: int) -> int:
        rng = np.random.default_rng((self.seed, _REPLACE_STREAM, sample_seed, index, attempt))
        return int(rng.integers(len(self)))

    def load_source(self, index: int, sample_seed: int) -> tuple[torch.Tensor, np.ndarray]:
        """Decoded image ``(3, H, W)`` and its labels; an unreadable image is replaced (see the module docstring)."""
        for attempt in range(MAX_REPLACEMENTS + 1):
            if index not in self._unreadable:
                try:
                    image = load_image(self.image_paths[index], self.max_pixels, self.decoder)
                except DataError as exc:
                    self._unreadable.add(index)
                    log.warning("%s; training goes on with other images in its place", exc)
                else:
                    return image, self.labels_of(index)
            index = self._replacement(index, sample_seed, attempt)
        raise DataError(f"{MAX_REPLACEMENTS + 1} unreadable training images in a row (see the warnings above); "
                        f"the training set is mostly unusable")

    def __getitem__(self, request: SampleRequest | tuple[int, int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        index, net_w, net_h, sample_seed = request
        rng = np.random.default_rng((self.seed, _SAMPLE_STREAM, sample_seed))
        count = draw_source_count(self.augment_cfg, rng)
        indices = [index, *rng.integers(len(self), size=count - 1).tolist()]  # Darknet's random extra sources
        sources = [self.load_source(int(i), sample_seed) for i in indices]
        return augment(sources, self.augment_cfg, net_w, net_h, rng)


def collate_train(batch: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack samples: images ``(B, 3, H, W)``; targets float32 ``(T, 6)`` rows ``[batch_index, class, cx, cy, w, h]``
    (relative to the network input), samples in order."""
    shapes = {tuple(image.shape) for image, _ in batch}
    if len(shapes) != 1:
        raise ValueError(f"a mini-batch needs one image size, got {sorted(shapes)}")
    images = torch.stack([image for image, _ in batch])
    labels = torch.cat([torch.as_tensor(rows, dtype=torch.float32).reshape(-1, 5) for _, rows in batch])
    counts = torch.tensor([len(rows) for _, rows in batch])
    batch_index = torch.repeat_interleave(torch.arange(len(batch), dtype=torch.float32), counts)
    return images, torch.cat([batch_index[:, None], labels], dim=1)


class TrainBatchSampler(Sampler):
    """Infinite stream of mini-batches (lists of :class:`SampleRequest`), iteration after iteration.

    One iteration is ``subdivisions`` mini-batches of ``mini_batch`` samples (one Darknet ``batch``); all of them share
    the network size of :class:`MultiScale` (changing every 10 iterations when ``random`` > 0). Iteration ``k`` depends
    only on ``(seed, k)``, so starting at ``start_iteration = k`` continues an interrupted run exactly. With
    ``world_size`` > 1 each rank gets its own disjoint block of the iteration's draws (``batch`` is per GPU).
    """

    def __init__(self, num_images: int, mini_batch: int, subdivisions: int, net_size: tuple[int, int],
                 random: float, resize_step: int, stride: int | None, seed: int, start_iteration: int = 0, *,
                 max_batches: int = 0, rank: int = 0, world_size: int = 1) -> None:
        if num_images < 1 or mini_batch < 1 or subdivisions < 1:
            raise ValueError(f"need num_images, mini_batch, subdivisions >= 1, got {num_images}, {mini_batch}, "
                             f"{subdivisions}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, {world_size})")
        if seed < 0 or start_iteration < 0:
            raise ValueError(f"seed and start_iteration must be >= 0, got {seed}, {start_iteration}")
        self.num_images, self.mini_batch, self.subdivisions = num_images, mini_batch, subdivisions
        self.scales = MultiScale(net_size[0], net_size[1], random, resize_step, max_batches, stride)
        self.seed, self.start_iteration, self.rank, self.world_size = seed, start_iteration, rank, world_size

    def iteration(self, iteration: int) -> list[list[SampleRequest]]:
        """This rank's ``subdivisions`` mini-batches of ``iteration``."""
        net_w, net_h = self.scales.size_at(iteration, self.seed)
        per_rank = self.subdivisions * self.mini_batch
        rng = np.random.default_rng((self.seed, _ORDER_STREAM, iteration))
        indices = rng.integers(self.num_images, size=per_rank * self.world_size)
        seeds = rng.integers(_SEED_LIMIT, size=per_rank * self.world_size, dtype=np.int64)
        mine = slice(self.rank * per_rank, (self.rank + 1) * per_rank)
        requests = [SampleRequest(index, net_w, net_h, sample_seed)
                    for index, sample_seed in zip(indices[mine].tolist(), seeds[mine].tolist())]
        return [requests[start:start + self.mini_batch] for start in range(0, per_rank, self.mini_batch)]

    def __iter__(self) -> Iterator[list[SampleRequest]]:
        iteration = self.start_iteration
        while True:
            yield from self.iteration(iteration)
            iteration += 1


def training_report(data: DarknetDataset | DataConfig | str | os.PathLike[str], num_classes: int) -> DataReport:
    """The ``.data`` file's training list scanned and checked (:meth:`DarknetDataset.training_report`)."""
    return DarknetDataset.of(data).training_report(num_classes)


def build_train_loader(data: DarknetDataset | DataConfig | str | os.PathLike[str], net: NetSettings | Section,
                       head_sections: Sequence[Section], workers: int, seed: int, start_iteration: int = 0,
                       rank: int = 0, world_size: int = 1, *, report: DataReport | None = None,
                       stride: int | None = None, decoder: Decoder = "auto") -> DataLoader:
    """The training DataLoader: an infinite iterator of ``(images (B, 3, H, W), targets (T, 6))`` mini-batches
    (see :func:`collate_train`), ``subdivisions`` of them per iteration, starting at ``start_iteration``.

    Settings come from the cfg as in ``train_detector``: ``net`` (``model.net``; a ``[net]`` section is read with
    :meth:`NetSettings.of`) gives ``batch/subdivisions``, ``width``, ``height``, ``resize_step``, ``max_batches`` and
    the augmentation keys; the *last* detection layer ``classes``, ``random``, ``jitter``, ``resize`` and ``max``.
    ``report`` (from :func:`training_report`) is built here when not given, and logged at INFO; either way training
    is refused (DataError with the report) when ``DataReport.check`` says so. ``stride``: the network's stride
    (``Darknet.stride``), to reject a ``resize_step`` that would not fit. Workers are persistent; create the iterator
    once (the loader never ends).
    """
    net = NetSettings.of(net)
    if not head_sections:
        raise CfgError(f"{net.where()}: no [yolo]/[region] layer: nothing to train a detector with")
    head = head_sections[-1]
    num_classes = head["classes"]
    if report is None:
        report = training_report(data, num_classes)
        log.info("\n%s", report.format())
    report.check()
    if net.dynamic_minibatch:
        raise net.error("dynamic_minibatch=1 is not supported (the batch size is fixed)", "dynamic_minibatch")
    if net.mini_batch < 1:
        raise net.error(f"batch={net.batch} / subdivisions={net.subdivisions} gives no image per mini-batch", "batch")
    sampler = TrainBatchSampler(
        len(report.image_paths), net.mini_batch, net.subdivisions, (net.width, net.height), head["random"],
        net.resize_step, stride, seed, start_iteration, max_batches=net.max_batches, rank=rank,
        world_size=world_size,
    )
    samples = TrainDataset(report.image_paths, num_classes, AugmentConfig.from_cfg(net, head), seed, decoder,
                           report=report)
    # The sampler yields whole mini-batches of requests, so each worker builds whole mini-batches at one size.
    return make_loader(samples, batch_size=None, workers=workers, collate=collate_train, batch_sampler=sampler,
                       persistent=True)
