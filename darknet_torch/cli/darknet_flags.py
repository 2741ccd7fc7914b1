"""Darknet's single-dash flags (``-thresh 0.3 -ext_output -dont_show -i 0``) on any command.

Command lines copied from Darknet tutorials spell options the C way. Before argparse sees a command's arguments,
:func:`translate_flags` rewrites each Darknet flag into the command's own option (``-ext_output`` ->
``--ext-output``, ``-i 0`` -> ``--device 0``), drops the ones that are no-ops here (``-dont_show``: we never open a
window), and replaces any other single-dash word by a one-line note ``ignoring Darknet flag -xyz (not supported)``
(its value is skipped too), so a tutorial's line runs instead of failing on a flag we do not need.
"""
from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from darknet_torch.config.sections import DIGITS_TEXT


@dataclass(frozen=True)
class DarknetFlag:
    """One of Darknet's flags: whether it takes a value, and our option for it (None: accepted, does nothing)."""

    takes_value: bool
    option: str | None


# Darknet's flags (darknet.c, detector.c run_detector, demo.c). A flag whose option the command lacks is ignored
# with a note; the table's arity keeps its value from being taken for a positional argument.
DARKNET_FLAGS: dict[str, DarknetFlag] = {
    "-thresh": DarknetFlag(True, "--thresh"),
    "-ext_output": DarknetFlag(False, "--ext-output"),
    "-save_labels": DarknetFlag(False, "--save-labels"),
    "-letter_box": DarknetFlag(False, "--letter-box"),
    "-out": DarknetFlag(True, "--json"),
    "-dont_show": DarknetFlag(False, None),
    "-i": DarknetFlag(True, "--device"),
    "-gpus": DarknetFlag(True, "--device"),
    "-map": DarknetFlag(False, "--map"),
    "-clear": DarknetFlag(False, "--clear"),
    "-points": DarknetFlag(True, "--points"),
    "-iou_thresh": DarknetFlag(True, "--iou-thresh"),
    "-num_of_clusters": DarknetFlag(True, "--num-of-clusters"),
    "-width": DarknetFlag(True, "--width"),
    "-height": DarknetFlag(True, "--height"),
    "-t": DarknetFlag(True, "--top"),  # classifier predict's top-K
    # demo's flags: the `demo` command spells them as Darknet does (they pass when it knows them); other flags
    "-c": DarknetFlag(True, None),
    "-s": DarknetFlag(True, None),
    "-out_filename": DarknetFlag(True, None),
    "-json_port": DarknetFlag(True, None),
    "-mjpeg_port": DarknetFlag(True, None),
    "-avgframes": DarknetFlag(True, None),
    "-prefix": DarknetFlag(True, None),
    "-hier": DarknetFlag(True, None),
    "-http_post_host": DarknetFlag(True, None),
    "-time_limit_sec": DarknetFlag(True, None),
    "-show": DarknetFlag(False, None),
    "-show_imgs": DarknetFlag(False, None),
    "-check_mistakes": DarknetFlag(False, None),
    "-benchmark": DarknetFlag(False, None),
    "-benchmark_layers": DarknetFlag(False, None),
    "-nogpu": DarknetFlag(False, None),
}
# Accepted without a note: the flag's effect is what we always do.
SILENT_NO_OPS = frozenset({"-dont_show"})

_DARKNET_WORD = re.compile(r"-[A-Za-z][A-Za-z0-9_]+")
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def is_darknet_word(token: str) -> bool:
    """A single-dash word such as ``-ext_output`` (not ``--long``, not ``-x``, not a negative number)."""
    return bool(_DARKNET_WORD.fullmatch(token)) or token in DARKNET_FLAGS


def takes_value(flag: str, following: str | None) -> bool:
    """Whether ``flag`` consumes the next token: by Darknet's table, else when the next token is a number."""
    known = DARKNET_FLAGS.get(flag)
    if known is not None:
        return known.takes_value and following is not None
    return following is not None and bool(_NUMBER.fullmatch(following))


def gpu_device(value: str) -> str:
    """Darknet's ``-i N`` / ``-gpus N[,M...]`` as a ``--device``: ``cuda:N`` (the first listed), or the CPU when
    there is no GPU. Several GPUs train with ``torchrun --nproc_per_node=K`` instead."""
    first = value.split(",")[0].strip()
    if "," in value:
        note(f"-gpus {value}: one process uses cuda:{first}; for several GPUs launch with torchrun "
             f"--nproc_per_node={len(value.split(','))}")
    if not torch.cuda.is_available():
        return "cpu"
    return first if DIGITS_TEXT.fullmatch(first) else value


def note(message: str) -> None:
    print(f"note: {message}", file=sys.stderr)


def translate_flags(tokens: Sequence[str], known: Mapping[str, bool]) -> list[str]:
    """A command's arguments with Darknet's flags turned into its options (``known``: its option strings, each
    mapped to whether it takes a value).

    Tokens the command knows (``--thresh``, ``-points``) pass unchanged, and so do the values of its options.
    """
    out: list[str] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        following = tokens[i + 1] if i + 1 < len(tokens) else None
        if token in known or not is_darknet_word(token):
            consumed = 2 if known.get(token) and following is not None else 1
            out += tokens[i:i + consumed]
            i += consumed
            continue
        consumed = 2 if takes_value(token, following) else 1
        flag = DARKNET_FLAGS.get(token)
        if flag is not None and flag.option is not None and flag.option in known:
            value = [] if consumed == 1 else [gpu_device(following) if flag.option == "--device" else following]
            out += [flag.option, *value]
        elif token not in SILENT_NO_OPS:
            note(f"ignoring Darknet flag {' '.join(tokens[i:i + consumed])} (not supported)")
        i += consumed
    return out
