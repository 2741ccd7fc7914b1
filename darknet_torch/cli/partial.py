"""``darknet_torch partial``: Darknet's ``partial`` - keep the first N layers' weights (a backbone ``x.conv.N``)."""
from __future__ import annotations

import argparse
from pathlib import Path

from darknet_torch.files import human_stream, prepare_output_file
from darknet_torch.train.checkpoint import write_partial


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("partial", help="write the weights of the first N layers (e.g. yolov4-tiny.conv.29)",
                       description="As Darknet's 'partial cfg weights output N': layers 0..N-1, seen reset to 0; "
                                   "train from it with --weights out.conv.N.")
    p.add_argument("--cfg", type=Path, required=True, help="the cfg the weights belong to")
    p.add_argument("--weights", type=Path, required=True, help="full Darknet .weights")
    p.add_argument("--output", type=Path, required=True,
                   help="output file, by convention <name>.conv.<N>; - for standard output")
    p.add_argument("--layers", type=int, required=True, metavar="N", help="keep layers 0..N-1")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    prepare_output_file(args.output, sources=[args.cfg, args.weights])
    model = write_partial(args.cfg, args.weights, args.output, args.layers)
    kept = sum(p.numel() for m in list(model.module_list)[: args.layers] for p in m.parameters())
    print(f"wrote {args.output}: layers 0..{args.layers - 1} ({kept:,} parameters), seen 0",
          file=human_stream(args.output))  # with --output -, standard output carries only the weights
    return 0
