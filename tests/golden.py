"""Readers for ../shared/golden (formats in golden/README.md section 2), shared by the parity tests."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
GOLDEN = SHARED / "golden"


@dataclass
class GoldenRun:
    """One golden folder: its cfg, weights, input and Darknet's dumps."""

    folder: Path
    index: dict

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def cfg(self) -> Path:
        real = self.folder.parent.name == "real"
        return self.folder.parent / self.index["cfg"] if real else self.folder / self.index["cfg"]

    @property
    def weights(self) -> Path:
        name = self.index["weights"].split()[0]  # real/ runs describe the file instead of shipping it
        local = self.folder / name
        return local if local.exists() else SHARED / "weights" / name

    def input(self) -> torch.Tensor:
        c, h, w = self.index["input"]["shape"]
        return torch.from_numpy(np.fromfile(self.folder / "input.f32", "<f4").reshape(1, c, h, w))

    def layer(self, index: int) -> np.ndarray | None:
        entry = self.index["layers"][index]
        return None if entry["file"] is None else np.fromfile(self.folder / entry["file"], "<f4")

    def dets(self, name: str, folder: Path | None = None) -> np.ndarray:
        info = self.index["detections"]
        path = (folder or self.folder) / name
        return np.fromfile(path, "<f4").reshape(-1, info["ncols"] if "pre" in name else 3)


def golden_runs(kind: str) -> list[Path]:
    """Folders of golden/<kind> that hold an index.json (empty when ../shared is absent)."""
    base = GOLDEN / kind
    return sorted(p.parent for p in base.glob("*/index.json")) if base.exists() else []


def load_run(folder: Path) -> GoldenRun:
    return GoldenRun(folder, json.loads((folder / "index.json").read_text()))
