"""``darknet_torch custom-cfg``: a copy of a cfg for your own number of classes (heads and their convs rewritten)."""
from __future__ import annotations

import argparse
from pathlib import Path

from darknet_torch.cli.options import positive_int
from darknet_torch.config.custom import customize_cfg_file
from darknet_torch.config.data_files import read_names
from darknet_torch.errors import CfgError
from darknet_torch.files import human_stream, prepare_output_file, write_atomic


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("custom-cfg", help="write a copy of a cfg for N classes (classes= and the filters= before "
                       "each head), everything else unchanged",
                       description="Rewrite classes= in every [yolo]/[Gaussian_yolo]/[region] head and filters= of "
                       "the [convolutional] before it ((classes+5)*anchors for yolo, (classes+9)*anchors for "
                       "Gaussian_yolo, (coords+1+classes)*num for region). Other lines are kept byte for byte.")
    p.add_argument("--cfg", required=True, help="source .cfg file")
    p.add_argument("--classes", type=positive_int, help="number of classes (default: lines of --names)")
    p.add_argument("--names", help=".names file; its line count is the number of classes")
    p.add_argument("--output", required=True, help="where to write the new .cfg")
    p.add_argument("--darknet-schedule", action="store_true",
                   help="also set max_batches=max(classes*2000, 6000) and steps=80%%,90%% of it (Darknet README)")
    p.set_defaults(run=run)


def class_count(classes: int | None, names: str | None) -> int:
    """The class count from ``--classes`` and/or ``--names``; both given must agree."""
    if names is None:
        if classes is None:
            raise CfgError("give --classes N or --names FILE")
        return classes
    count = len(read_names(names))
    if classes is not None and classes != count:
        raise CfgError(f"--classes {classes} but {names} has {count} names")
    return count


def run(args: argparse.Namespace) -> int:
    prepare_output_file(args.output, sources=[args.cfg, *([args.names] if args.names else [])])
    classes = class_count(args.classes, args.names)
    data, edits = customize_cfg_file(args.cfg, classes, darknet_schedule=args.darknet_schedule)
    write_atomic(Path(args.output), data)
    lines_to = human_stream(args.output)  # with --output -, standard output carries only the cfg
    print(f"{args.output}: {args.cfg} for {classes} classes, {len(edits)} line(s) changed", file=lines_to)
    for edit in edits:
        print(f"  {edit.describe()}", file=lines_to)
    return 0
