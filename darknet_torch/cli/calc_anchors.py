"""``darknet_torch calc_anchors``: Darknet's ``detector calc_anchors`` (k-means anchors for a cfg's ``anchors=``)."""
from __future__ import annotations

import argparse
import logging

import numpy as np

from darknet_torch.cli.options import non_negative_int, positive_int
from darknet_torch.errors import DarknetError
from darknet_torch.evaluate.anchors import format_anchors, kmeans_anchors, load_label_sizes, plot_anchors
from darknet_torch.files import prepare_output_file, write_atomic

log = logging.getLogger(__name__)

MAX_ISSUES_SHOWN = 10


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("calc_anchors", help="k-means anchors from the training labels (Darknet's calc_anchors)",
                       description="Cluster the (w, h) of every training label, scaled to the network size, with "
                                   "distance 1-IoU, and print the 'anchors = ...' line for the cfg and the average "
                                   "IoU.")
    p.add_argument("--data", required=True, help="Darknet .data file; its train= list gives the images")
    p.add_argument("--num-of-clusters", type=positive_int, default=5,
                   help="number of anchors (default: %(default)s, as Darknet; YOLOv3/v4 cfgs use 9)")
    p.add_argument("--width", type=positive_int, required=True, help="network width ([net] width)")
    p.add_argument("--height", type=positive_int, required=True, help="network height ([net] height)")
    p.add_argument("--seed", type=non_negative_int,
                   help="random seed of the initial centres (default: a fresh one, printed)")
    p.add_argument("--show", metavar="PLOT", help="save a scatter plot of the clusters to this image file")
    p.add_argument("--output", metavar="FILE", help="also write the anchors to FILE (Darknet writes anchors.txt)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    for path in (args.output, args.show):
        if path:
            prepare_output_file(path, sources=[args.data])
    sizes = load_label_sizes(args.data, args.width, args.height)
    for issue in sizes.issues[:MAX_ISSUES_SHOWN]:
        log.warning("%s", issue)
    if len(sizes.issues) > MAX_ISSUES_SHOWN:
        log.warning("... and %d more label issues", len(sizes.issues) - MAX_ISSUES_SHOWN)
    seed = args.seed if args.seed is not None else int(np.random.SeedSequence().generate_state(1)[0])
    print(f"num_of_clusters = {args.num_of_clusters}, width = {args.width}, height = {args.height}, seed = {seed}")
    print(f"read labels from {sizes.num_images} images: {len(sizes.wh)} boxes")
    result = kmeans_anchors(sizes.wh, args.num_of_clusters, seed)
    line = format_anchors(result.anchors, args.width)
    print(f"iterations = {result.iterations}")
    print(f"avg IoU = {100 * result.avg_iou:.2f} %")
    print(line)
    if args.output:
        try:
            write_atomic(args.output, line.removeprefix("anchors = ").encode("utf-8"))
        except OSError as exc:
            raise DarknetError(f"{args.output}: cannot write the anchors ({exc.strerror or exc})") from exc
        print(f"saved anchors to {args.output}")
    if args.show:
        try:
            plot_anchors(sizes.wh, result, args.show, args.width, args.height)
        except (OSError, ValueError) as exc:  # unwritable path; matplotlib: unknown image format
            raise DarknetError(f"{args.show}: cannot save the plot ({exc})") from exc
        print(f"saved plot to {args.show}")
    return 0
