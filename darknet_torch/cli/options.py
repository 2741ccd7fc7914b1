"""Options shared by the commands that run the network on image files (``detect``, ``map``)."""
from __future__ import annotations

import argparse

from darknet_torch.cli.fast_option import add_fast_argument


def add_inference_options(p: argparse.ArgumentParser, batch_size: int, workers: int | None,
                          letter_box_help: str) -> None:
    """--letter-box, --batch-size, --workers, --decoder, --device and --fast, with per-command defaults (``workers``
    None: the library's device-dependent default, runtime.loader_workers)."""
    p.add_argument("--letter-box", action=argparse.BooleanOptionalAction, default=None, help=letter_box_help)
    p.add_argument("--batch-size", type=int, default=batch_size, help="images per forward pass (default: %(default)s)")
    p.add_argument("--workers", type=int, default=workers,
                   help="image decoding processes (default: %(default)s)" if workers is not None else
                   "image decoding processes (default: 2 with CUDA; 0 on the CPU, where they would only take cores "
                   "from the network)")
    p.add_argument("--decoder", choices=("auto", "pil", "stb"), default="auto",
                   help="JPEG decoder: stb = Darknet's own (needs libstb), pil = Pillow; auto: stb if installed")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or N (default: cuda if available)")
    add_fast_argument(p)
