"""``classifier predict`` (AlexeyAB src/classifier.c ``predict_classifier``): the image is loaded, resized so its
shorter side is the network width (``resize_min``), centre-cropped to the network size (``crop_image``), run through
the network (whose output is the last layer's values, e.g. its ``[softmax]``; ``[cost]`` is skipped) and the ``top``
largest outputs are printed as ``name: value`` with ``%f``."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from darknet_torch.data.images import Decoder, center_crop_min, load_image
from darknet_torch.errors import CfgError
from darknet_torch.model.darknet import Darknet
from darknet_torch.runtime import model_device


def top_k(values: torch.Tensor, k: int) -> list[int]:
    """utils.c ``top_k``: indices of the ``k`` largest values, largest first, in Darknet's order for ties.

    Each index is inserted into ``k`` slots, displacing a slot's index only when strictly larger; a displaced index
    moves on down past equal values, so ties do not keep index order (``[1, 1, 2]`` gives ``2, 1, 0``).
    """
    a = values.tolist()
    index = [-1] * k
    for i in range(len(a)):
        curr = i
        for j in range(k):
            if index[j] < 0 or a[curr] > a[index[j]]:
                curr, index[j] = index[j], curr
                if curr < 0:
                    break
    return [i for i in index if i >= 0]


@dataclass(frozen=True)
class Classification:
    """One image's result: the ``top`` (index, name, value) triples, largest first, and the forward time."""

    path: str
    top: list[tuple[int, str, float]]
    seconds: float

    def darknet_lines(self) -> list[str]:
        """predict_classifier's printout for this image."""
        return [f"{self.path}: Predicted in {self.seconds * 1000:f} milli-seconds.",
                *(f"{name}: {value:f}" for _, name, value in self.top)]


class Classifier:
    """A classification network with Darknet's ``classifier predict`` pre-processing and top-K."""

    def __init__(self, model: Darknet, names: list[str] | None = None, top: int = 5,
                 decoder: Decoder = "auto") -> None:
        if model.head_indices:
            raise CfgError(f"{model.cfg_path}: this cfg is a detector ([yolo]/[region] heads); use 'detect'")
        model.check_rgb_input("classification")
        self.model, self.decoder = model.eval(), decoder
        c, h, w = model.layer_infos[-1].out_shape
        self.outputs = c * h * w
        if names is not None and len(names) != self.outputs:
            raise CfgError(f"{len(names)} class names but the network outputs {self.outputs} values "
                           f"(Darknet: 'num of filters ... doesn't match to classes')")
        self.names = names or [str(i) for i in range(self.outputs)]
        if top < 1:
            raise CfgError(f"top must be >= 1, got {top}")
        self.top = min(top, self.outputs)

    def prepare(self, image: torch.Tensor) -> torch.Tensor:
        """``[3, H, W]`` in [0, 1] -> the network input ``[3, net_h, net_w]``."""
        net_h, net_w = self.model.input_size
        return center_crop_min(image, net_w, net_h)

    @torch.no_grad()
    def classify(self, path: str | Path) -> Classification:
        x = self.prepare(load_image(path, decoder=self.decoder))
        device = model_device(self.model)
        start = time.perf_counter()
        values = self.model(x[None].to(device))[0].float().cpu()
        seconds = time.perf_counter() - start
        top = [(i, self.names[i], float(values[i])) for i in top_k(values, self.top)]
        return Classification(str(path), top, seconds)
