"""``map`` over several processes (torchrun): every rank detects its share of the validation list
(:func:`~darknet_torch.distributed.batch_shard`), rank 0 gathers the detections and scores them alone, so the
printout is the one-process printout digit for digit."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from darknet_torch.distributed import DistContext, gather_in_input_order


def gather_detections(rows: Sequence[np.ndarray | None], sizes: np.ndarray, failed: Sequence[tuple[Path, str]],
                      indices: Sequence[int], count: int, ctx: DistContext
                      ) -> tuple[list[np.ndarray | None], np.ndarray, list[tuple[Path, str]]] | None:
    """:func:`~darknet_torch.evaluate.runner.detect_batches`'s results for this rank's images (``indices``: their
    positions in the whole list of ``count``), put together on rank 0 exactly as one process would have them;
    None on the other ranks."""
    errors = iter(failed)  # detect_batches lists the failures in input order: they are the images without rows
    per_image = [(index, (image_rows, (int(w), int(h)), next(errors) if image_rows is None else None))
                 for index, image_rows, (w, h) in zip(indices, rows, sizes)]
    gathered = gather_in_input_order(per_image, count, ctx)
    if gathered is None:
        return None
    all_rows = [image_rows for image_rows, _, _ in gathered]
    all_sizes = np.array([size for _, size, _ in gathered], np.int64).reshape(count, 2)
    return all_rows, all_sizes, [failure for _, _, failure in gathered if failure is not None]
