"""``darknet_torch train``: Darknet's ``detector train`` (flags, or Darknet's positional order).

``darknet_torch train --data obj.data --cfg x.cfg [--weights w]`` or ``darknet_torch train obj.data x.cfg [w]``;
Darknet's ``-map`` and ``-clear`` are accepted too.  Multi-GPU / multi-node: launch the same command with
``torchrun --nproc_per_node=N`` (see ``darknet_torch.train.distributed``).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from darknet_torch.cli.options import float_in, non_negative_float, non_negative_int, positive_int
from darknet_torch.errors import DarknetError
from darknet_torch.train.run import TrainOptions, train


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a detector from a .data file and a .cfg (Darknet's 'detector train')",
                       description="Train with Darknet's semantics: [net] batch/subdivisions/learning-rate schedule, "
                                   "checkpoints <cfg>_last/_best/_final/_N.weights in the .data file's backup "
                                   "folder, and <cfg>_last.pt to resume exactly.")
    p.add_argument("positional", nargs="*", metavar="DATA CFG [WEIGHTS]",
                   help="Darknet's order: obj.data x.cfg [weights] (instead of --data/--cfg/--weights)")
    p.add_argument("--data", type=Path, help=".data file (classes, train, valid, names, backup)")
    p.add_argument("--cfg", type=Path, help="network .cfg file; [net] holds every training setting")
    p.add_argument("--weights", type=Path, help="initial weights: a Darknet .weights or a backbone x.conv.N "
                                                "(default: Darknet's random initialisation)")
    p.add_argument("--partial", action="store_true", default=None,
                   help="the weights may stop before the last layer (implied for names ending in .conv.N)")
    p.add_argument("--clear", "-clear", action="store_true",
                   help="start at iteration 0 instead of the weights' seen/batch (Darknet's -clear)")
    p.add_argument("--resume", nargs="?", const=True, default=False, metavar="STATE",
                   help="continue exactly from a training state (default: <backup>/<cfg>_last.pt)")
    p.add_argument("--map", "-map", dest="calc_map", action="store_true",
                   help="evaluate mAP@0.5 on 'valid' periodically; keeps <cfg>_best.weights (Darknet's -map)")
    p.add_argument("--map-every", type=positive_int, metavar="N",
                   help="iterations between mAP evaluations (default: Darknet's, 4 epochs and at least 100)")
    p.add_argument("--ema-alpha", type=float_in(0, 1, low_open=True, high_open=True), metavar="A",
                   help="keep Darknet's EMA of the weights with this alpha (overrides [net] ema_alpha)")
    p.add_argument("--sparsity", type=non_negative_float, default=0.0, metavar="S",
                   help="network slimming: L1 penalty S (per image, e.g. 1e-4) on batch-norm scales, before `prune`")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                   help="mixed precision: float16 on CUDA (default on), bfloat16 on CPU (default off; about 2x "
                        "faster on CPUs with AVX512-BF16 or AMX, not bit-exact; float32 with a warning on CPUs "
                        "without bfloat16 kernels)")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="NHWC memory format (default: on with the CPU, where convolutions run faster in it)")
    p.add_argument("--backup", type=Path, help="checkpoint folder (default: the .data file's backup=)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, 0, ... (default: first GPU, else CPU)")
    p.add_argument("--workers", type=non_negative_int, default=None,
                   help="data-loading worker processes (default: 4 with CUDA; 0 on the CPU, where workers would only "
                        "take cores from the training step)")
    p.add_argument("--seed", type=non_negative_int, default=0,
                   help="seed of the data stream and the initialisation (default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--log-every", type=positive_int, default=1, metavar="N",
                   help="a row of <backup>/results_<cfg>.csv (loss parts per head, lr, images/s, mAP) every N "
                        "iterations (default 1; also TensorBoard scalars when tensorboard is installed)")
    p.add_argument("--no-tensorboard", action="store_true", help="no TensorBoard scalars even when installed")
    p.add_argument("--show-imgs", type=non_negative_int, nargs="?", const=3, default=0, metavar="N",
                   help="save the augmented batches of the first N iterations (default 3) as JPEG mosaics with "
                        "their boxes in <backup>/batches_<cfg>/; creating the file 'request' there saves the next")
    p.add_argument("-show_imgs", dest="show_imgs", action="store_const", const=3, help="Darknet's spelling of "
                   "--show-imgs (3 iterations; takes no value)")
    p.add_argument("--dont-show", "-dont_show", action="store_true",
                   help="accepted for Darknet command lines (the chart is always written to a file, never shown)")
    p.set_defaults(run=run)


def options_from_args(args: argparse.Namespace) -> TrainOptions:
    """Merge Darknet's positional order with the flags; a file given both ways must agree."""
    if len(args.positional) > 3:
        raise DarknetError(f"expected at most DATA CFG WEIGHTS positionally, got {len(args.positional)} values")
    files = dict(zip(("data", "cfg", "weights"), (Path(p) for p in args.positional)))
    for key, value in files.items():
        flag = getattr(args, key)
        if flag is not None and flag != value:
            raise DarknetError(f"{key} given twice: {value} and --{key} {flag}")
        setattr(args, key, value)
    if args.data is None or args.cfg is None:
        raise DarknetError("train needs a .data file and a .cfg: --data obj.data --cfg x.cfg (or: obj.data x.cfg)")
    resume = Path(args.resume) if isinstance(args.resume, str) else args.resume
    return TrainOptions(data=args.data, cfg=args.cfg, weights=args.weights, partial=args.partial, clear=args.clear,
                        resume=resume, device=args.device, workers=args.workers, seed=args.seed,
                        calc_map=args.calc_map, map_every=args.map_every, ema_alpha=args.ema_alpha, amp=args.amp,
                        channels_last=args.channels_last, sparsity=args.sparsity, backup=args.backup,
                        progress=not args.quiet, log_every=args.log_every, tensorboard=not args.no_tensorboard,
                        show_imgs=args.show_imgs)


def run(args: argparse.Namespace) -> int:
    result = train(options_from_args(args))
    best = f", best mAP@0.5 {100 * result.best_map:.2f} %" if result.best_map is not None else ""
    print(f"trained to iteration {result.iteration}, avg loss {result.avg_loss:.4f}{best}")
    return 0
