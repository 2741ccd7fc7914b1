"""Build a model from a cfg and its weights with the messages a user needs when something is missing."""
from __future__ import annotations

from pathlib import Path

import torch

from darknet_torch.errors import WeightsError
from darknet_torch.model.darknet import Darknet


def load_model(cfg: str | Path, weights: str | Path | None, device: torch.device | str = "cpu",
               fuse: bool = True) -> Darknet:
    """Darknet network from ``cfg`` with ``weights`` (Darknet ``.weights``, or a darknet_torch ``.pt`` state dict),
    in eval mode on ``device``, BN folded when ``fuse``."""
    model = Darknet(cfg)
    if weights is not None:
        weights = Path(weights)
        if not weights.exists():
            hint = ""
            if weights.name in ("yolov3-tiny.weights", "yolov3.weights", "yolov4.weights", "yolov4-tiny.weights"):
                hint = f"; download it with:  python weights/download_weights.py {weights.stem}"
            raise WeightsError(f"weights file not found: {weights}{hint}")
        if weights.suffix == ".pt":
            state = torch.load(weights, map_location="cpu", weights_only=True)
            model.load_state_dict(state.get("model", state))
        else:
            model.load_darknet_weights(weights)
    model.to(device).eval()
    return model.fuse() if fuse else model
