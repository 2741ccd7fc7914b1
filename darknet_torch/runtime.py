"""Where and how to run: device selection and CPU thread settings, in one place for every command."""
from __future__ import annotations

import torch

from darknet_torch.errors import DarknetError


def select_device(name: str | None = None) -> torch.device:
    """``None``/``"auto"``: the first CUDA device if there is one, else the CPU; otherwise ``torch.device(name)``."""
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.isdigit():
        name = f"cuda:{name}"
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DarknetError(f"device {name!r} requested but CUDA is not available; use --device cpu")
    return device
