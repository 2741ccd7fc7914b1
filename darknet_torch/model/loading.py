"""Build a model from a cfg and its weights with the messages a user needs when something is missing or wrong."""
from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch

from darknet_torch.errors import WeightsError
from darknet_torch.model.darknet import Darknet
from darknet_torch.model.weights import warn_suspicious_values


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
            load_state_dict_file(model, weights)
        else:
            model.load_darknet_weights(weights)
    model.to(device).eval()
    return model.fuse() if fuse else model


def read_torch_file(path: Path, what: str) -> object:
    """``torch.load(weights_only=True)``: tensors and plain values only, a pickle that would run code is refused.

    Raises:
        WeightsError: ``path: not a <what> (<reason>)`` for an empty, truncated, foreign or malicious file.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # weights_only refusing a global (code) or a malformed pickle
        reason = next((line.strip() for line in str(exc).splitlines() if "WeightsUnpickler error" in line),
                      str(exc).splitlines()[0] if str(exc) else "unreadable pickle")
        raise WeightsError(f"{path}: not a {what} (refused to unpickle: {reason})") from None
    except (RuntimeError, zipfile.BadZipFile, EOFError, OSError, ValueError, AttributeError, KeyError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise WeightsError(f"{path}: not a {what} ({reason or 'empty file'})") from None


def load_state_dict_file(model: Darknet, path: Path) -> None:
    """Load a ``.pt`` written by darknet_torch (a state dict, or a training state whose ``model`` is one).

    Raises:
        WeightsError: not a state dict of tensors, or one that does not match ``model``'s cfg (names what differs).
    """
    loaded = read_torch_file(path, "darknet_torch checkpoint")
    state = loaded.get("model", loaded) if isinstance(loaded, dict) else loaded
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        kind = type(state).__name__ if not isinstance(state, dict) else "dict of non-tensors"
        raise WeightsError(f"{path}: not a darknet_torch checkpoint (it holds a {kind}, not a state dict of tensors)")
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    reshaped = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or reshaped:
        parts = []
        if missing:
            parts.append(f"{len(missing)} tensors missing (first {missing[0]!r})")
        if unexpected:
            parts.append(f"{len(unexpected)} unknown (first {unexpected[0]!r})")
        if reshaped:
            k = reshaped[0]
            parts.append(f"{len(reshaped)} of another shape (first {k!r}: {list(state[k].shape)} in the file, "
                         f"{list(expected[k].shape)} in the cfg)")
        raise WeightsError(f"{path}: does not match {model.cfg_path} ({'; '.join(parts)}); it was saved from "
                           f"another cfg (classes=/filters= differ?)")
    model.load_state_dict(state)
    warn_suspicious_values(model.module_list, model.layer_labels(), path)
