"""Network slimming of yolov3-tiny on coco128: parameters, BFLOPs, forward time and mAP@0.5, before pruning, after
pruning at several ratios (one global ``|gamma|`` threshold as in the paper, and per-layer ratios), and after a short
fine-tune of each pruned network; as a control, the unpruned network gets the same fine-tune (coco128's ``valid`` is
its ``train`` list, so fine-tuning alone moves its mAP).

    python benchmarks/slimming_yolov3_tiny.py [--ratios 0.3 0.5] [--modes global per-layer] [--iterations 100]

The official weights were not trained with the sparsity penalty, so their ``|gamma|`` are not comparable across
layers and none is near 0: pruning costs much more accuracy than after the paper's sparsity training.
``--sparsity s`` first trains with the penalty (training's ``--sparsity``) and prunes that network instead.  Forward
times are medians of batch-1 416x416 passes with BN folded, all networks interleaved so that machine load hits them
equally.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from terminaltables import GithubFlavoredMarkdownTable

from darknet_torch import Darknet
from darknet_torch.config import parse_cfg_text
from darknet_torch.config.custom import CfgLineEditor, _set
from darknet_torch.config.data_files import read_data_file, read_image_list, read_names
from darknet_torch.evaluate.runner import evaluate
from darknet_torch.export.prune import apply_pruning, network_cost, plan_pruning, prunable_bn_layers, save_pruned
from darknet_torch.train.checkpoint import CheckpointPaths, basecfg
from darknet_torch.train.run import TrainOptions, build_trainer

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def forward_ms(models: dict[str, Darknet], size: int, runs: int) -> dict[str, float]:
    """Median wall time (ms) of a batch-1 forward pass of each model, interleaved A B C A B C after 3 warm-ups."""
    x = torch.rand(1, 3, size, size)
    times: dict[str, list[float]] = {name: [] for name in models}
    for model in models.values():
        model.eval().fuse()
    with torch.inference_mode():
        for round_index in range(runs + 3):
            for name, model in models.items():
                start = time.perf_counter()
                model(x)
                if round_index >= 3:
                    times[name].append(1000 * (time.perf_counter() - start))
    for model in models.values():
        model.unfuse()
    return {name: statistics.median(values) for name, values in times.items()}


def map50(name: str, model: Darknet, images: list[Path], names: list[str], workers: int) -> float:
    value = evaluate(model, images, names, len(names), workers=workers, progress=False).map
    cost = network_cost(model)
    print(f"{name}: {cost.params:,} params, {cost.bflops:.3f} BFLOPs, mAP@0.5 {100 * value:.2f} %", flush=True)
    return value


def fine_tune(cfg: Path, weights: Path, args: argparse.Namespace, iterations: int, tag: str,
              sparsity: float = 0.0) -> tuple[Path, Path]:
    """Train the pair on ``--data`` for ``iterations`` at a constant rate (``darknet_torch train`` semantics); returns
    the cfg and final weights.  With ``sparsity`` add the paper's ``s * sign(gamma)`` before every update."""
    text = cfg.read_text()
    raws = parse_cfg_text(text, str(cfg))
    editor = CfgLineEditor(text)
    settings = dict(batch=args.batch, subdivisions=1, max_batches=iterations, burn_in=args.burn_in,
                    learning_rate=args.lr, policy="constant")
    for key, value in settings.items():
        _set(editor, raws[0], key, value, [])
    for raw in raws:  # train at 416 only (multi-scale would go up to 608 on CPU)
        if raw.name == "yolo":
            _set(editor, raw, "random", 0, [])
    tuned_cfg = args.out / f"{tag}.cfg"
    tuned_cfg.write_text(editor.text())
    backup = args.out / tag
    trainer = build_trainer(TrainOptions(data=args.data, cfg=tuned_cfg, weights=weights, clear=True, device="cpu",
                                         workers=args.workers, backup=backup, progress=False, seed=args.seed,
                                         sparsity=sparsity))
    started = time.perf_counter()
    trainer.run()
    print(f"{tag}: {iterations} iterations in {time.perf_counter() - started:.0f} s", flush=True)
    return tuned_cfg, CheckpointPaths(backup, basecfg(tuned_cfg)).weights("final")


def load(cfg: Path, weights: Path) -> Darknet:
    return Darknet(cfg).load_darknet_weights(weights)


def small_gamma_share(model: Darknet, below: float = 0.1) -> float:
    """Fraction of BN scales with |gamma| < ``below``: how sparse the network already is."""
    gammas = torch.cat([model.module_list[i].bn.weight.detach().abs() for i in prunable_bn_layers(model)])
    return float((gammas < below).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cfg", type=Path, default=ROOT / "cfg" / "yolov3-tiny.cfg")
    parser.add_argument("--weights", type=Path, default=SHARED / "weights" / "yolov3-tiny.weights")
    parser.add_argument("--data", type=Path, default=SHARED / "coco128" / "coco128.data")
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.3, 0.5])
    parser.add_argument("--modes", nargs="+", choices=("global", "per-layer"), default=["global", "per-layer"])
    parser.add_argument("--min-channels", type=int, default=8)
    parser.add_argument("--iterations", type=int, default=100, help="fine-tune iterations (0: no fine-tune)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=0.001)
    parser.add_argument("--burn-in", type=int, default=10)
    parser.add_argument("--no-control", action="store_true", help="skip fine-tuning the unpruned network")
    parser.add_argument("--sparsity", type=float, default=0.0,
                        help="first train with the BN L1 penalty s (per image, the paper's units) and prune that")
    parser.add_argument("--sparsity-iterations", type=int, default=200)
    parser.add_argument("--runs", type=int, default=20, help="timed forward passes per network")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "slimming_yolov3_tiny")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)

    data = read_data_file(args.data)
    images, names = read_image_list(data.valid or data.train), read_names(data.names)
    model = load(args.cfg, args.weights)
    models = {"unpruned": model}
    source, source_files, source_name = model, (args.cfg, args.weights), "unpruned"
    if args.sparsity:
        source_files = fine_tune(args.cfg, args.weights, args, args.sparsity_iterations, "sparse", args.sparsity)
        source = load(*source_files)
        source_name = f"sparsity-trained {args.sparsity_iterations} it (s={args.sparsity:g})"
        models[source_name] = source
    print(f"{source_name}: {100 * small_gamma_share(source):.1f}% of prunable |gamma| < 0.1", flush=True)
    if args.iterations and not args.no_control:
        models[f"{source_name} + fine-tune {args.iterations} it"] = load(*fine_tune(*source_files, args,
                                                                                     args.iterations, "control"))
    for mode in args.modes:
        for ratio in args.ratios:
            plan = plan_pruning(source, ratio=ratio, per_layer=mode == "per-layer", per_layer_min=args.min_channels)
            text, pruned = apply_pruning(source, plan)
            tag = f"pruned_{mode}{round(100 * ratio)}"
            cfg, weights = save_pruned(text, pruned, args.out / tag)
            share = 100 * plan.removed / sum(plan.original.values())
            models[f"{mode} {ratio:g}: pruned ({share:.0f}% of BN channels)"] = pruned
            models[f"{mode} {ratio:g}: pruned, constants not folded"] = apply_pruning(source, plan, fold=False)[1]
            if args.iterations:
                models[f"{mode} {ratio:g}: pruned + fine-tune {args.iterations} it"] = \
                    load(*fine_tune(cfg, weights, args, args.iterations, f"{tag}_ft"))

    scores = {name: map50(name, net, images, names, args.workers) for name, net in models.items()}
    times = forward_ms(models, model.input_size[0], args.runs)
    table = [["network", "params", "BFLOPs", "forward ms", "coco128 mAP@0.5"]]
    for name, net in models.items():
        cost = network_cost(net)
        table.append([name, f"{cost.params:,}", f"{cost.bflops:.3f}", f"{times[name]:.1f}",
                      f"{100 * scores[name]:.2f} %"])
    print(f"\nfine-tune: batch {args.batch}, {args.iterations} iterations at 416, lr {args.lr} constant after "
          f"{args.burn_in} burn-in; forward: batch 1, 416x416, BN folded, median of {args.runs}, "
          f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}")
    print(GithubFlavoredMarkdownTable(table).table)


if __name__ == "__main__":
    main()
