"""``darknet_torch classifier predict DATA CFG WEIGHTS [IMAGE] -t N``: Darknet's ``classifier predict`` command line,
word for word, run as ``classify`` (without IMAGE the image paths are read from standard input, as Darknet asks for
them)."""
from __future__ import annotations

import argparse
import logging
import shlex
from collections.abc import Sequence

from darknet_torch.cli.detector import split_arguments
from darknet_torch.detect.sources import STDIN_SOURCE
from darknet_torch.errors import CfgError

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("classifier", help="Darknet's command line as it is: classifier predict DATA CFG WEIGHTS "
                                          "[IMAGE] -t N",
                       description="Darknet's 'classifier predict', translated to classify.")
    p.add_argument("action", choices=("predict",), help="Darknet's classifier action")
    p.add_argument("arguments", nargs=argparse.REMAINDER, metavar="DATA CFG WEIGHTS [IMAGE] -flags",
                   help="as Darknet takes them")
    p.set_defaults(run=run)


def translate(tokens: Sequence[str]) -> list[str]:
    """Our command line for ``classifier predict TOKENS``."""
    positionals, options = split_arguments(tokens)
    if len(positionals) not in (3, 4):
        raise CfgError(f"classifier predict takes DATA CFG WEIGHTS [IMAGE] (and -flags), got {len(positionals)} "
                       f"positional argument(s): {' '.join(positionals) or '(none)'}")
    data, cfg, weights, *image = positionals
    return ["classify", *(image or [STDIN_SOURCE]), "--data", data, "--cfg", cfg, "--weights", weights, *options]


def run(args: argparse.Namespace) -> int:
    from darknet_torch.cli.main import main  # main imports this module to build its parser

    command = translate(args.arguments)
    log.info("= darknet_torch %s", shlex.join(command))
    return main(command)
