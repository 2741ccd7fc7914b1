"""A Darknet ``.data`` file as one object: its image lists, class names and labels, each read and checked once.

``DarknetDataset.from_data_file(path)`` parses the file (``config/data_files.py``); the rest is read on first use and
kept: the names, every image list, and every list's label scan (:func:`~darknet_torch.data.report.data_report`:
images, label files, malformed lines, boxes per class).  ``train``, ``train --map``, ``map`` and ``calc_anchors``
all go through it, so a data set is checked the same way everywhere and never read twice (``train --map`` scores
each evaluation against the labels scanned at start-up).  Which keys a command needs differs (so do Darknet's
defaults): a command asks with :meth:`DarknetDataset.require`, saying why.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from pathlib import Path

from darknet_torch.config.data_files import (DataConfig, exists_quietly, read_data_file, read_image_list, read_names,
                                             resolve_relative)
from darknet_torch.data.report import DataReport, data_report
from darknet_torch.errors import CfgError, DataError

#: ``train_detector``'s list when the ``.data`` file has no ``train`` key.
DARKNET_DEFAULT_TRAIN_LIST = "data/train.txt"


class DarknetDataset:
    """The files a ``.data`` file names; see the module docstring.  ``config`` is the parsed file."""

    def __init__(self, config: DataConfig) -> None:
        self.config = config
        self._names: list[str] | None = None
        self._images: dict[Path, list[Path]] = {}
        self._scans: dict[tuple[Path, int | None], DataReport] = {}

    @classmethod
    def from_data_file(cls, path: str | os.PathLike[str], used_keys: Iterable[str] = ()) -> "DarknetDataset":
        """Parse ``path``; ``used_keys``: extra keys the caller reads from ``config.extra`` (not reported unused).

        Raises:
            CfgError: unreadable or malformed file (path:line).
        """
        config = read_data_file(path)
        used = tuple(used_keys)
        warnings = tuple(w for w in config.warnings if not any(f"key {key!r}" in w for key in used))
        return cls(dataclasses.replace(config, warnings=warnings))

    @classmethod
    def of(cls, data: "DarknetDataset | DataConfig | str | os.PathLike[str]") -> "DarknetDataset":
        """``data`` itself, or the data set of a parsed or unparsed ``.data`` file."""
        if isinstance(data, DarknetDataset):
            return data
        return cls(data) if isinstance(data, DataConfig) else cls.from_data_file(data)

    @property
    def path(self) -> Path:
        return self.config.path

    @property
    def warnings(self) -> tuple[str, ...]:
        """``path:line`` messages about keys darknet_torch does not use, for the caller to show once."""
        return self.config.warnings

    def require(self, key: str, purpose: str) -> Path:
        """The path of ``key`` (``train``, ``valid``, ``names``), or a CfgError saying which command needs it."""
        value = getattr(self.config, key)
        if value is None:
            raise CfgError(f"{self.path}: no '{key} =' entry: {purpose}")
        return value

    def names(self, purpose: str = "the class names are needed") -> list[str]:
        """The class names (``names =``, read once)."""
        if self._names is None:
            self._names = read_names(self.require("names", purpose))
        return self._names

    def check_classes(self, num_classes: int) -> None:
        """``classes =``, when set, must be the network's (its last detection layer's) class count."""
        if self.config.classes is not None and self.config.classes != num_classes:
            raise CfgError(f"{self.path}: classes={self.config.classes}, but the cfg's last detection layer has "
                           f"classes={num_classes}")

    def train_list(self) -> Path:
        """``train =``, or Darknet's default ``data/train.txt`` (``train_detector``); the file must exist."""
        key = "train" if self.config.train is not None else \
            f"train (not set; Darknet's default {DARKNET_DEFAULT_TRAIN_LIST})"
        list_path = self.config.train or resolve_relative(DARKNET_DEFAULT_TRAIN_LIST, self.path)
        if not exists_quietly(list_path, is_file=True):  # a name too long is "not found", not an OSError
            raise DataError(f"{self.path}: {key} = {list_path}: image list not found (relative paths are looked up "
                            f"from the working directory, then beside the .data file)")
        return list_path

    def images(self, list_path: Path) -> list[Path]:
        """The images of a list file (read once; every image must exist, see ``read_image_list``)."""
        if list_path not in self._images:
            self._images[list_path] = read_image_list(list_path)
        return self._images[list_path]

    def scan(self, list_path: Path, num_classes: int | None, names: list[str] | None = None) -> DataReport:
        """The label scan of a list (once per list and class count); ``num_classes=None`` keeps every class
        (``calc_anchors``); ``names`` only label the report's per-class table."""
        key = (list_path, num_classes)
        if key not in self._scans:
            self._scans[key] = data_report(self.images(list_path), num_classes, names, warnings=self.warnings)
        return self._scans[key]

    def training_report(self, num_classes: int) -> DataReport:
        """The training list's scan, as ``train`` shows and checks it before starting.

        Raises:
            DataError: the list file does not exist or is empty, or listed images are missing (path:line).
            CfgError: the ``names`` file is unreadable; ``classes`` differs from the cfg's.
        """
        self.check_classes(num_classes)
        list_path = self.train_list()
        self.images(list_path)
        names = self.names() if self.config.names is not None else None
        return self.scan(list_path, num_classes, names)

    def validation_list(self) -> Path:
        """What ``train --map`` scores on: ``valid =``, defaulting to the training list as in Darknet."""
        return self.config.valid or self.train_list()
