"""``darknet_torch detector test|map|train|calc_anchors|demo DATA CFG [WEIGHTS] [FILE] -flags``: Darknet's own
command lines, word for word, translated to our commands.

Darknet (``run_detector`` in detector.c) takes DATA CFG WEIGHTS FILE positionally and its single-dash flags anywhere;
this module only sorts the positionals from the flags and hands the result to ``detect``, ``map``, ``train``,
``calc_anchors`` or ``demo``, whose flag translation (cli/darknet_flags.py) does the rest. Our own ``--options`` may
follow: from the first one on, the arguments pass unchanged.
"""
from __future__ import annotations

import argparse
import logging
import shlex
from collections.abc import Sequence

from darknet_torch.cli.darknet_flags import is_darknet_word, note, takes_value
from darknet_torch.detect.sources import STDIN_SOURCE
from darknet_torch.errors import CfgError

log = logging.getLogger(__name__)

ACTIONS = ("test", "map", "train", "calc_anchors", "demo")
#: Darknet's calc_anchors always saves its line to this file.
ANCHORS_FILE = "anchors.txt"
#: The flag Darknet's ``detector map`` accepts and overrides with ``[net] letter_box``.
DARKNET_MAP_LETTER_BOX = "-letter_box"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("detector", help="Darknet's command lines as they are: detector test|map|train|calc_anchors|"
                                        "demo DATA CFG [WEIGHTS] [FILE] -flags",
                       description="Darknet's 'detector' command lines, translated to detect, map, train, "
                                   "calc_anchors and demo (README, Commands). Unsupported Darknet flags are "
                                   "ignored with a note.")
    p.add_argument("action", choices=ACTIONS, help="Darknet's detector action")
    p.add_argument("arguments", nargs=argparse.REMAINDER, metavar="DATA CFG [WEIGHTS] [FILE] -flags",
                   help="as Darknet takes them")
    p.set_defaults(run=run)


def split_arguments(tokens: Sequence[str]) -> tuple[list[str], list[str]]:
    """(positionals, options): Darknet's flags (with their values) may stand anywhere; from the first ``--option``
    on, everything is an option."""
    positionals: list[str] = []
    options: list[str] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token.startswith("--"):
            options += tokens[i:]
            break
        if is_darknet_word(token):
            following = tokens[i + 1] if i + 1 < len(tokens) else None
            consumed = 2 if takes_value(token, following) else 1
            options += tokens[i:i + consumed]
            i += consumed
            continue
        positionals.append(token)
        i += 1
    return positionals, options


def _expect(action: str, positionals: list[str], required: Sequence[str], optional: Sequence[str]) -> list[str]:
    names = [*required, *(f"[{name}]" for name in optional)]
    if not len(required) <= len(positionals) <= len(required) + len(optional):
        raise CfgError(f"detector {action} takes {' '.join(names)} (and -flags), got {len(positionals)} "
                       f"positional argument(s): {' '.join(positionals) or '(none)'}")
    return positionals + [None] * (len(required) + len(optional) - len(positionals))


def translate(action: str, tokens: Sequence[str], commands: Sequence[str]) -> list[str]:
    """Our command line for ``detector ACTION TOKENS`` (``commands``: the registered command names)."""
    positionals, options = split_arguments(tokens)
    if action == "test":
        data, cfg, weights, image = _expect(action, positionals, ("DATA", "CFG", "WEIGHTS"), ("IMAGE",))
        # Darknet prints its per-image lines always; without IMAGE it reads image paths from standard input
        return ["detect", image or STDIN_SOURCE, "--data", data, "--cfg", cfg, "--weights", weights, "--print",
                *options]
    if action in ("map", "train"):
        _expect(action, positionals, ("DATA", "CFG"), ("WEIGHTS",))
        return [action, *positionals, *(_without_map_letter_box(options) if action == "map" else options)]
    if action == "calc_anchors":
        (data,) = _expect(action, positionals, ("DATA",), ())
        return ["calc_anchors", "--data", data, "--output", ANCHORS_FILE, *options]
    if "demo" not in commands:
        raise CfgError("detector demo needs the 'demo' command, which this installation does not have; "
                       "for images, folders or lists use: detector test DATA CFG WEIGHTS [IMAGE]")
    data, cfg, weights, source = _expect(action, positionals, ("DATA", "CFG", "WEIGHTS"), ("FILE",))
    if source is None and not any(o == "-c" or o.startswith("--camera") for o in options):
        source = "0"  # demo.c: without FILE, the camera of -c, which defaults to 0
    return ["demo", *([source] if source else []), "--data", data, "--cfg", cfg, "--weights", weights, *options]


def _without_map_letter_box(options: list[str]) -> list[str]:
    """Darknet's ``-letter_box`` dropped, with a note: validate_detector_map sets letter_box from the cfg's ``[net]``
    whatever the flag says (the golden map runs with and without it print the same 24.44 %).  Our own
    ``--letter-box``, after the first ``--option``, still applies."""
    darknet_part = options[:next((i for i, o in enumerate(options) if o.startswith("--")), len(options))]
    if DARKNET_MAP_LETTER_BOX not in darknet_part:
        return options
    note(f"detector map ignores {DARKNET_MAP_LETTER_BOX}, as Darknet does (it letterboxes only when the cfg's [net] "
         "has letter_box=1; map --letter-box forces it)")
    return [o for o in darknet_part if o != DARKNET_MAP_LETTER_BOX] + options[len(darknet_part):]


def run(args: argparse.Namespace) -> int:
    from darknet_torch.cli.main import COMMANDS, main  # main imports this module to build its parser

    command = translate(args.action, args.arguments, tuple(COMMANDS))
    log.info("= darknet_torch %s", shlex.join(command))
    return main(command)
