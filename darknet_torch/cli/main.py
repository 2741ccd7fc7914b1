"""``darknet_torch <command>``: one entry point, one module per command (each adds its parser and a ``run``)."""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from darknet_torch.cli.darknet_flags import translate_flags
from darknet_torch.errors import DarknetError
from darknet_torch.runtime import keep_freed_memory

# command name -> module defining add_parser(subparsers); listed here so --help shows them all.
COMMANDS = {
    "summary": "darknet_torch.cli.summary",
    "custom-cfg": "darknet_torch.cli.custom_cfg",
    "detect": "darknet_torch.cli.detect",
    "classify": "darknet_torch.cli.classify",
    "demo": "darknet_torch.cli.demo",
    "map": "darknet_torch.cli.map",
    "export": "darknet_torch.cli.export",
    "calc_anchors": "darknet_torch.cli.calc_anchors",
    "train": "darknet_torch.cli.train",
    "partial": "darknet_torch.cli.partial",
    "prune": "darknet_torch.cli.prune",
    "serve": "darknet_torch.cli.serve",
    "detector": "darknet_torch.cli.detector",
    "classifier": "darknet_torch.cli.classifier",
}
# Commands that take Darknet's whole argument list as it is (they translate it themselves).
RAW_ARGUMENTS = ("detector", "classifier")
# Batch commands let glibc keep freed memory for reuse (runtime.keep_freed_memory: 1.3-1.4x faster training steps);
# the long-running server does not, so its memory can shrink again after a burst of requests.
KEEP_FREED_MEMORY = ("detect", "map", "train")


class OneLineErrors(argparse.ArgumentParser):
    """A usage error is one line, ``PROG: error: MESSAGE (see PROG --help)``, exit 2: without argparse's usage block,
    which for most commands is a dozen lines above the one that matters. Sub-parsers are of the same class."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrors(prog="darknet_torch", description="Darknet in PyTorch: detect, map, train, "
                                     "export with Darknet's own .cfg/.weights/.data files.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    for module in COMMANDS.values():
        importlib.import_module(module).add_parser(sub)
    return parser


def with_darknet_flags(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """``argv`` with Darknet's single-dash flags after the command turned into that command's options
    (cli/darknet_flags.py)."""
    commands = next(a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    position = next((i for i, token in enumerate(argv) if token in commands), None)
    if position is None or argv[position] in RAW_ARGUMENTS:
        return argv
    known = {option: action.nargs != 0 for option, action in commands[argv[position]]._option_string_actions.items()}
    return [*argv[:position + 1], *translate_flags(argv[position + 1:], known)]


def _keep_undecodable_names() -> None:
    """Print a file name that is not UTF-8 (held as lone surrogates, ``caf\\udce9.jpg``) as its original bytes, as
    Darknet's printf does: a UTF-8 locale's strict stdout raised UnicodeEncodeError mid-run (stderr already
    escapes them)."""
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None and (sys.stdout.encoding or "").lower().replace("-", "") == "utf8":
        reconfigure(errors="surrogateescape")


def main(argv: list[str] | None = None) -> int:
    """Run one command: exit status 2 with one ``error:`` line for a DarknetError (and argparse's usage errors), 130
    for Ctrl-C from the parser's build on (earlier, while Python imports torch, Python's own handler runs)."""
    _keep_undecodable_names()
    try:
        parser = build_parser()
        args = parser.parse_args(with_darknet_flags(parser, sys.argv[1:] if argv is None else list(argv)))
        logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                            format="%(levelname)s %(message)s" if args.verbose else "%(message)s")
        if args.command in KEEP_FREED_MEMORY:
            logging.getLogger(__name__).debug("glibc keeps freed memory for reuse: %s", keep_freed_memory())
        return int(args.run(args) or 0)
    except DarknetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
