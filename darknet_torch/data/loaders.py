"""The one DataLoader factory, and the dataset that feeds inference (detect, map, benchmarks).

Image decoding and Darknet's resize run in worker processes so they overlap the forward pass.  A bad image does not
stop the run: its item carries the error message (with the path) and the caller reports it and carries on; so does an
image that decodes but cannot be fitted to the network.  An image that decoded with a problem (a truncated JPEG that
stb_image grey-fills, as Darknet does) carries a warning instead.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from darknet_torch.data.images import (
    DEFAULT_MAX_PIXELS, Decoder, LetterboxInfo, load_pixels, u8_hwc_to_unit_chw,
)
from darknet_torch.errors import DarknetError

Prepare = Callable[[Tensor], tuple[Tensor, LetterboxInfo]]


@dataclass
class InferenceItem:
    """One image ready for the network, or the reason it is not."""

    index: int
    path: Path
    input: Tensor | None
    info: LetterboxInfo | None
    error: str | None = None
    #: A problem that did not stop the image from being used (e.g. a truncated JPEG decoded grey-filled).
    warning: str | None = None


@dataclass
class InferenceBatch:
    """Collated items: ``inputs`` stacks the good images; ``failed`` keeps the others with their errors."""

    items: list[InferenceItem]
    inputs: Tensor | None

    @property
    def good(self) -> list[InferenceItem]:
        return [item for item in self.items if item.error is None]

    @property
    def failed(self) -> list[InferenceItem]:
        return [item for item in self.items if item.error is not None]


class InferenceDataset(Dataset):
    """Images from paths, decoded and fitted to the network by ``prepare`` (e.g. :meth:`Predictor.preparer`).

    ``prepare`` takes float ``[3, H, W]`` images; one with a ``pixels`` method (a
    :class:`~darknet_torch.data.images.Preprocessor`) is given the decoded uint8 image instead: the same input, for
    less CPU."""

    def __init__(self, paths: Sequence[str | Path], prepare: Prepare, decoder: Decoder = "auto",
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        self.paths = [Path(p) for p in paths]
        self.prepare, self.decoder, self.max_pixels = prepare, decoder, max_pixels
        self._from_pixels = getattr(prepare, "pixels", None)  # a Preprocessor's uint8 path

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> InferenceItem:
        path = self.paths[index]
        warnings: list[str] = []
        try:
            pixels = load_pixels(path, self.max_pixels, self.decoder, warn=warnings.append)
        except DarknetError as exc:
            return InferenceItem(index, path, None, None, str(exc))
        try:
            net_input, info = (self._from_pixels(pixels) if self._from_pixels
                               else self.prepare(u8_hwc_to_unit_chw(pixels)))
        except Exception as exc:  # one image that cannot be fitted must fail alone, not the whole run
            message = f"{path}: cannot prepare the {pixels.shape[1]}x{pixels.shape[0]} image for the network: {exc}"
            return InferenceItem(index, path, None, None, message)
        return InferenceItem(index, path, net_input, info, warning="; ".join(warnings) or None)


def collate_inference(items: list[InferenceItem]) -> InferenceBatch:
    good = [item.input for item in items if item.error is None]
    return InferenceBatch(items, torch.stack(good) if good else None)


def make_loader(dataset: Dataset, batch_size: int | None, workers: int, collate: Callable | None = None,
                shuffle: bool = False, sampler: Sampler | None = None, drop_last: bool = False,
                persistent: bool = False, seed: int | None = None, batch_sampler: Sampler | None = None) -> DataLoader:
    """A DataLoader with the project's defaults: workers with prefetching, pinned memory on CUDA, seeded order.

    ``batch_sampler`` (yielding lists of dataset indices, one list per batch) replaces ``batch_size``, ``shuffle``,
    ``sampler`` and ``drop_last``, which must then be None/False."""
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    if batch_sampler is not None:
        if batch_size is not None or shuffle or sampler is not None or drop_last:
            raise ValueError("batch_sampler excludes batch_size, shuffle, sampler and drop_last")
        batching = dict(batch_sampler=batch_sampler)
    else:
        batching = dict(batch_size=batch_size, shuffle=shuffle and sampler is None, sampler=sampler,
                        drop_last=drop_last)
    return DataLoader(dataset, **batching, num_workers=workers, collate_fn=collate,
                      pin_memory=torch.cuda.is_available(), persistent_workers=persistent and workers > 0,
                      prefetch_factor=4 if workers > 0 else None, generator=generator)


def inference_loader(paths: Sequence[str | Path], prepare: Prepare, batch_size: int = 1, workers: int = 2,
                     decoder: Decoder = "auto") -> DataLoader:
    """Batches of prepared images in path order (see :class:`InferenceBatch`)."""
    dataset = InferenceDataset(paths, prepare, decoder)
    workers = min(workers, len(dataset))
    return make_loader(dataset, batch_size, workers, collate=collate_inference)
