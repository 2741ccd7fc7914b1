"""Training fixtures: a tiny cfg and a synthetic data set (coloured rectangles on noise) written by the test itself."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

# class id -> RGB of its rectangles; distinct hues so a tiny network can tell them apart.
COLOURS = ((220, 40, 40), (40, 200, 60), (50, 80, 230))
NAMES = ("red", "green", "blue")

TINY_NET = {
    "batch": 8, "subdivisions": 2, "width": 64, "height": 64, "channels": 3, "momentum": 0.9, "decay": 0.0005,
    "learning_rate": 0.001, "burn_in": 5, "max_batches": 30, "policy": "steps", "steps": "20", "scales": ".1",
    "flip": 0,
}


def tiny_cfg_text(net: dict | None = None, batch_normalize: bool = True, yolo: dict | None = None,
                  filters: tuple[int, ...] = (8, 16, 32)) -> str:
    """A small detector for 64x64 inputs: conv+maxpool stages (``filters``), a 3x3 and a 1x1 conv, one [yolo] head on
    an 8x8 grid (with three stages) with 3 anchors and 3 classes; ``net``/``yolo`` override keys."""
    values = {**TINY_NET, **(net or {})}
    bn = f"batch_normalize={int(batch_normalize)}\n"
    lines = ["[net]", *(f"{k}={v}" for k, v in values.items()), ""]
    for count in filters:
        lines += ["[convolutional]", bn + f"filters={count}", "size=3", "stride=1", "pad=1", "activation=leaky", "",
                  "[maxpool]", "size=2", "stride=2", ""]
    # a 3x3 conv on the 8x8 grid widens the receptive field to whole rectangles, so cells can place box centres
    lines += ["[convolutional]", bn + f"filters={filters[-1]}", "size=3", "stride=1", "pad=1", "activation=leaky", "",
              "[convolutional]", "size=1", "stride=1", "pad=1", "filters=24", "activation=linear", ""]
    head = {"mask": "0,1,2", "anchors": "14,14, 22,22, 30,30", "classes": 3, "num": 3, "jitter": 0.1,
            "ignore_thresh": 0.7, "truth_thresh": 1, "random": 0, **(yolo or {})}
    lines += ["[yolo]", *(f"{k}={v}" for k, v in head.items()), ""]
    return "\n".join(lines)


def write_tiny_cfg(path: Path, **kwargs) -> Path:
    path.write_text(tiny_cfg_text(**kwargs))
    return path


def write_synthetic_set(root: Path, count: int = 8, size: int = 64, seed: int = 0) -> Path:
    """``count`` noise images with 1-2 coloured rectangles each, YOLO labels, a list, names and a ``.data`` file
    (``valid`` = ``train``); returns the ``.data`` path.  Rectangles are 14..30 px and do not overlap."""
    rng = np.random.default_rng(seed)
    folder = root / "obj"  # Darknet's custom-data layout: labels beside their images
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        pixels = rng.integers(70, 186, size=(size, size, 3)).astype(np.uint8)
        boxes: list[tuple[int, int, int, int]] = []
        rows = []
        for _ in range(int(rng.integers(1, 3))):
            for _attempt in range(50):
                w, h = (int(v) for v in rng.integers(14, 31, size=2))
                x0, y0 = int(rng.integers(0, size - w + 1)), int(rng.integers(0, size - h + 1))
                if all(x0 >= bx + bw or bx >= x0 + w or y0 >= by + bh or by >= y0 + h for bx, by, bw, bh in boxes):
                    break
            else:
                continue
            cls = int(rng.integers(len(COLOURS)))
            pixels[y0:y0 + h, x0:x0 + w] = COLOURS[cls]
            boxes.append((x0, y0, w, h))
            rows.append(f"{cls} {(x0 + w / 2) / size:.6f} {(y0 + h / 2) / size:.6f} {w / size:.6f} {h / size:.6f}")
        image = folder / f"img{i:03d}.png"
        Image.fromarray(pixels).save(image)
        image.with_suffix(".txt").write_text("\n".join(rows) + "\n")
        paths.append(str(image))
    (root / "train.txt").write_text("\n".join(paths) + "\n")
    (root / "obj.names").write_text("\n".join(NAMES) + "\n")
    data = root / "obj.data"
    data.write_text(f"classes = {len(NAMES)}\ntrain = {root / 'train.txt'}\nvalid = {root / 'train.txt'}\n"
                    f"names = {root / 'obj.names'}\nbackup = {root / 'backup'}\n")
    return data


@pytest.fixture
def synthetic_data(tmp_path: Path) -> Path:
    return write_synthetic_set(tmp_path / "set")


@pytest.fixture
def tiny_cfg(tmp_path: Path) -> Path:
    return write_tiny_cfg(tmp_path / "tiny.cfg")


class SquaredOutputLoss(torch.nn.Module):
    """A stand-in criterion with a known gradient: half the summed squares of the heads' maps (targets unused),
    returned with Darknet-style parts; summed over the mini-batch like Darknet's loss."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor, targets: torch.Tensor):
        loss = sum(0.5 * (out ** 2).sum() for out in self.model.head_outputs(images))
        return loss, {"box": loss.detach()}


def random_stream(mini_batch: int, size: int = 64, seed: int = 0):
    """A restartable batch source of noise images: mini-batch ``j`` (counted from iteration 0, ``subdivisions`` per
    iteration) is always the same tensor, as the real loader guarantees."""

    def source(subdivisions: int):
        def batches(start: int):
            index = start * subdivisions
            while True:
                generator = torch.Generator().manual_seed(seed * 100003 + index)
                yield torch.rand(mini_batch, 3, size, size, generator=generator), torch.zeros(0, 6)
                index += 1
        return batches

    return source


@pytest.fixture
def cfg_factory(tmp_path: Path):
    """``cfg_factory(name, net={...}, yolo={...}, batch_normalize=..., filters=...)`` writes a tiny cfg."""
    return lambda name="tiny.cfg", **kwargs: write_tiny_cfg(tmp_path / name, **kwargs)


@pytest.fixture
def squared_output_loss():
    return SquaredOutputLoss


@pytest.fixture
def stream_factory():
    """``stream_factory(mini_batch, subdivisions)`` -> a restartable deterministic batch source of noise images."""
    return lambda mini_batch, subdivisions, seed=0: random_stream(mini_batch, seed=seed)(subdivisions)
