"""The inference dataset fits images from their decoded uint8 pixels when ``prepare`` can take them."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from darknet_torch.data.images import Preprocessor, load_image
from darknet_torch.data.loaders import InferenceDataset


def test_a_preprocessor_gets_the_uint8_pixels_and_a_plain_function_the_float_image(tmp_path: Path) -> None:
    paths = []
    for i, size in enumerate([(64, 48), (33, 71), (1, 5)]):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (*size[::-1], 3), dtype=np.uint8)).save(paths[-1])
    seen: list[tuple[int, ...]] = []

    def plain(image: torch.Tensor):
        seen.append(tuple(image.shape))
        return Preprocessor(40, 30, letterbox=True)(image)

    fast = InferenceDataset(paths, Preprocessor(40, 30, letterbox=True), decoder="pil")
    slow = InferenceDataset(paths, plain, decoder="pil")
    for i, path in enumerate(paths):
        a, b = fast[i], slow[i]
        assert a.error is None and b.error is None and a.info == b.info
        assert torch.equal(a.input, b.input)
        assert torch.equal(a.input, Preprocessor(40, 30, letterbox=True)(load_image(path))[0])
    assert seen == [(3, 48, 64), (3, 71, 33), (3, 5, 1)]
