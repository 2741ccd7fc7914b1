"""Training's per-iteration numbers as ``results_<cfg>.csv`` (and TensorBoard scalars when it is installed).

One row every ``every`` iterations, and on every iteration that evaluated mAP: the loss Darknet prints and its
average, each loss part summed over the heads and per head (``box_0``, ``obj_0``, ``cls_0``, ``iou_0``: heads in cfg
order), the learning rate, images/s and mAP@0.5 (empty when not evaluated). The values are the ones the progress
line already fetched from the device, so logging adds no synchronisation. Rows are appended and flushed; a resumed
run first drops the rows after its start iteration (written after the state it resumes from), and a torn last line.
"""
from __future__ import annotations

import csv
import io
import logging
import math
from pathlib import Path

from darknet_torch.config.sections import DIGITS_TEXT
from darknet_torch.errors import DataError, quoted
from darknet_torch.files import write_atomic

log = logging.getLogger(__name__)


def _tensorboard_writer(folder: Path):
    """A ``SummaryWriter`` on ``folder``, or None when TensorBoard is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # torch.utils.tensorboard needs the tensorboard package
        return None
    return SummaryWriter(str(folder))


class ResultsLog:
    """Appends rows to a CSV file (columns fixed by the first row, ``map`` last; a missing or NaN value is an empty
    cell) and mirrors them to TensorBoard when ``tensorboard_dir`` is given and TensorBoard is importable."""

    def __init__(self, path: Path, start_iteration: int = 0, every: int = 1, tensorboard_dir: Path | None = None):
        if every < 1:
            raise ValueError(f"log every {every} iterations: must be >= 1")
        self.path, self.every = path, every
        self.columns: list[str] | None = None  # fixed by the file's header or the first row; missing values: empty
        self._warned = False
        self._write_failed = False
        self._keep_rows_up_to(start_iteration)
        self.tensorboard = _tensorboard_writer(tensorboard_dir) if tensorboard_dir is not None else None

    def _keep_rows_up_to(self, iteration: int) -> None:
        """On resume: keep the header and the complete rows up to ``iteration``; rewrite the file atomically."""
        if not self.path.is_file():
            return
        try:
            with self.path.open(newline="", encoding="utf-8") as handle:
                rows = list(csv.reader(handle))
        except (UnicodeDecodeError, csv.Error) as exc:
            raise self._unreadable(f"it is not UTF-8 CSV text ({exc})") from None
        except OSError as exc:
            raise self._unreadable(f"cannot read it ({exc.strerror or exc})") from None
        if not rows:
            return
        if rows[0][:1] != ["iteration"]:
            raise self._unreadable(f"its first line {quoted(','.join(rows[0]))} is not a results header "
                                   f"(iteration,...)")
        header, kept = rows[0], []
        for row in rows[1:]:
            if len(row) == len(header) and DIGITS_TEXT.fullmatch(row[0]) and int(row[0]) <= iteration:
                kept.append(row)
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows([header, *kept])
        write_atomic(self.path, buffer.getvalue().encode())
        self.columns = header

    def _unreadable(self, why: str) -> DataError:
        """The error for a results file that cannot be continued; the file is left as it is."""
        return DataError(f"{self.path}: cannot continue this results log: {why}; the file is left unchanged "
                         f"(move or delete it to start a new log)")

    def log(self, iteration: int, values: dict[str, float], evaluated: bool = False) -> None:
        """Write the row of ``iteration`` if it is due (every ``every`` iterations, or ``evaluated``); a row that
        cannot be written (disk full, read-only) is a warning, once: the log never stops training."""
        if not evaluated and iteration % self.every:
            return
        try:
            self._write_row(iteration, values)
        except OSError as exc:
            if not self._write_failed:
                self._write_failed = True
                log.warning("%s: cannot write the results log (%s); training goes on", self.path,
                            exc.strerror or exc)

    def _write_row(self, iteration: int, values: dict[str, float]) -> None:
        row = {"iteration": iteration, **values}
        if self.columns is None:
            columns = [*[k for k in row if k != "map"], "map"]
            write_atomic(self.path, (",".join(columns) + "\n").encode())
            self.columns = columns  # only once the header is on disk
        unknown = set(row) - set(self.columns)
        if unknown and not self._warned:
            self._warned = True
            log.warning("%s: not logging %s (not among the file's columns)", self.path, ", ".join(sorted(unknown)))
        with self.path.open("a", newline="", encoding="utf-8") as handle:
            csv.writer(handle, lineterminator="\n").writerow(
                [_cell(row.get(column)) for column in self.columns])
        if self.tensorboard is not None:
            for name, value in values.items():
                if value is not None and math.isfinite(value):
                    self.tensorboard.add_scalar(f"train/{name}" if name != "map" else "metrics/mAP50", value,
                                                iteration)
            self.tensorboard.flush()

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()


def _cell(value: float | int | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value) if isinstance(value, int) else repr(float(value))  # repr: reads back as the same float
