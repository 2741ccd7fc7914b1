"""``darknet_torch classify``: Darknet's ``classifier predict`` (and ``darknet classify``) on images.

For each image, Darknet's printout: ``<path>: Predicted in <ms> milli-seconds.`` then ``<name>: <value>`` for the top
classes.  Exit status: 0 all images classified, 1 when any image failed (named on stderr; the others are still
classified), 2 for a usage or configuration error.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from darknet_torch.classify import Classifier
from darknet_torch.cli.options import positive_int
from darknet_torch.config.data_files import read_data_file, read_names, resolve_relative
from darknet_torch.detect.sources import expand_sources
from darknet_torch.errors import CfgError, DataError
from darknet_torch.model.loading import load_model
from darknet_torch.runtime import select_device

log = logging.getLogger(__name__)

DEFAULT_TOP = 5  # darknet.c's "classify" shorthand passes top=5


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("classify", help="top-K classes of a classification network (Darknet's classifier predict)",
                       description="Darknet's 'classifier predict': resize_min to the network width, centre crop, "
                                   "forward, print the top classes.")
    p.add_argument("sources", nargs="+", metavar="SOURCE", help="image, folder, .txt list of image paths, or glob")
    p.add_argument("--recursive", action="store_true", help="also take images from sub-folders of folders")
    p.add_argument("--cfg", required=True, help="Darknet classification .cfg (e.g. darknet19.cfg)")
    p.add_argument("--weights", help="Darknet .weights or darknet_torch .pt (without: random initialisation)")
    names = p.add_mutually_exclusive_group()
    names.add_argument("--names", help="class names, one per line (default: class numbers)")
    names.add_argument("--data", help="Darknet .data file: names= (or labels=) gives the names, top= the default top")
    p.add_argument("--top", type=positive_int,
                   help=f"classes to print per image (default: the .data top=, else {DEFAULT_TOP})")
    p.add_argument("--decoder", choices=("auto", "stb", "pil"), default="auto",
                   help="JPEG decoder: stb is Darknet's own (needs libstb); auto uses it when installed")
    p.add_argument("--device", help="cpu, cuda, cuda:N (default: CUDA if available)")
    p.set_defaults(run=run)


def resolve_names_and_top(args: argparse.Namespace) -> tuple[list[str] | None, int]:
    """Names from --names or the .data's names=/labels= (Darknet's order); top from --top, .data top=, or 5, at most
    the .data's classes= (predict_classifier: ``if (top > classes) top = classes``)."""
    top, classes = args.top, None
    names_path = Path(args.names) if args.names else None
    if args.data:
        config = read_data_file(args.data)
        if config.names is None and "labels" not in config.extra:
            raise CfgError(f"{args.data}: no 'names =' or 'labels =' entry; pass --names")
        names_path = config.names or resolve_relative(config.extra["labels"], config.path)
        if top is None and "top" in config.extra:
            try:
                top = int(config.extra["top"])
            except ValueError:
                raise CfgError(f"{args.data}: top={config.extra['top']!r} is not an integer") from None
        classes = config.classes
    top = DEFAULT_TOP if top is None else top
    return (read_names(names_path) if names_path else None), top if classes is None else min(top, classes)


def run(args: argparse.Namespace) -> int:
    paths = expand_sources(args.sources, args.recursive)
    names, top = resolve_names_and_top(args)
    if args.weights is None:
        log.warning("no --weights: the network has random weights")
    model = load_model(args.cfg, args.weights, select_device(args.device))
    classifier = Classifier(model, names, top, args.decoder)
    failed = 0
    for path in paths:
        try:
            result = classifier.classify(path)
        except DataError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed += 1
            continue
        print("\n".join(result.darknet_lines()), flush=True)
    if failed:
        print(f"{failed} of {len(paths)} image(s) failed (see the errors above)", file=sys.stderr)
    return 1 if failed else 0
