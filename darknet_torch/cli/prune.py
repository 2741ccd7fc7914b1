"""``darknet_torch prune``: network slimming of a cfg + weights into a smaller cfg + weights pair.

Removes the convolution channels whose batch-norm scale is small (see :mod:`darknet_torch.export.prune`), writes
``<output>.cfg`` (the source cfg with only ``filters=`` values changed) and ``<output>.weights``, and prints what
each convolution lost.  Fine-tune the result with ``darknet_torch train --cfg <output>.cfg --weights
<output>.weights --clear``.
"""
from __future__ import annotations

import argparse

from terminaltables import AsciiTable

from darknet_torch.cli.options import float_in, non_negative_float, positive_int
from darknet_torch.errors import DarknetError
from darknet_torch.export.prune import PruningPlan, apply_pruning, network_cost, plan_pruning, save_pruned
from darknet_torch.files import prepare_output_file
from darknet_torch.model.darknet import Darknet
from darknet_torch.model.layers.conv import ConvBlock
from darknet_torch.model.loading import load_model


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prune", help="network slimming: remove conv channels with small batch-norm scales",
                       description="Prune the output channels of batch-norm convolutions whose |gamma| is below a "
                                   "threshold (global, from --ratio or --threshold, or per layer), keeping shortcut, "
                                   "route and head constraints; writes OUTPUT.cfg and OUTPUT.weights.")
    p.add_argument("--cfg", required=True, help="Darknet .cfg")
    p.add_argument("--weights", required=True, help="Darknet .weights (ideally trained with a BN sparsity penalty)")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--ratio", type=float_in(0, 1, high_open=True),
                     help="fraction of prunable BN channels to remove, in [0, 1)")
    how.add_argument("--threshold", type=non_negative_float, help="remove channels with |gamma| below this")
    p.add_argument("--per-layer", action="store_true", help="apply --ratio within each layer instead of globally")
    p.add_argument("--min-channels", type=positive_int, default=8,
                   help="every pruned convolution keeps at least this many channels (default: %(default)s)")
    p.add_argument("--round-to", type=positive_int, default=1,
                   help="round kept channel counts up to a multiple of this (default: %(default)s)")
    p.add_argument("--no-fold", action="store_true",
                   help="do not fold removed channels' constant output into the next layers (for comparison)")
    p.add_argument("--output", "-o", required=True, help="output prefix: writes OUTPUT.cfg and OUTPUT.weights")
    p.set_defaults(run=run)


def pruning_table(before: Darknet, after: Darknet, plan: PruningPlan) -> str:
    """One row per convolution: filters, parameters and BFLOPs before -> after, and why a layer was kept whole."""
    rows = [["layer", "filters", "params", "BFLOPs", "note"]]
    for index, module in enumerate(before.module_list):
        if not isinstance(module, ConvBlock):
            continue
        old, new = network_cost(before, [index]), network_cost(after, [index])
        filters = f"{before.layer_infos[index].out_shape[0]} -> {after.layer_infos[index].out_shape[0]}"
        rows.append([index, filters, f"{old.params:,} -> {new.params:,}", f"{old.bflops:.3f} -> {new.bflops:.3f}",
                     plan.frozen.get(index, "no batch norm" if module.bn is None else "")])
    old, new = network_cost(before), network_cost(after)
    rows.append(["all", f"-{plan.removed} channels", f"{old.params:,} -> {new.params:,} "
                 f"({100 * (1 - new.params / old.params):.1f}% fewer)",
                 f"{old.bflops:.3f} -> {new.bflops:.3f} ({100 * (1 - new.bflops / old.bflops):.1f}% fewer)", ""])
    table = AsciiTable(rows)
    table.inner_footing_row_border = True
    return table.table


def run(args: argparse.Namespace) -> int:
    if args.per_layer and args.ratio is None:
        raise DarknetError("--per-layer needs --ratio")
    for suffix in (".cfg", ".weights"):  # save_pruned's pair
        prepare_output_file(f"{args.output}{suffix}", sources=[args.cfg, args.weights])
    model = load_model(args.cfg, args.weights, fuse=False)
    plan = plan_pruning(model, args.ratio, args.threshold, per_layer=args.per_layer,
                        per_layer_min=args.min_channels, round_to=args.round_to)
    text, pruned = apply_pruning(model, plan, fold=not args.no_fold)
    cfg_path, weights_path = save_pruned(text, pruned, args.output)
    print(pruning_table(model, pruned, plan))
    threshold = "per-layer thresholds" if plan.threshold is None else f"|gamma| threshold {plan.threshold:.4g}"
    print(f"{threshold}; wrote {cfg_path} and {weights_path}")
    return 0
