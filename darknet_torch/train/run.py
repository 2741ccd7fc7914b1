"""``train(options)``: from Darknet's files (``.data``, ``.cfg``, ``.weights``) to a finished training run.

Darknet's ``detector train`` semantics: without ``--clear`` training continues from the iteration stored in the
weights' header (``seen / batch``); ``*.conv.N`` backbones load partially; ``valid`` defaults to ``train`` for
``--map``; ``backup`` comes from the ``.data`` file, and so do ``saveweights``/``savelast`` (save periods).
"""
from __future__ import annotations

import dataclasses
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from darknet_torch.config.sections import DIGITS_TEXT
from darknet_torch.data.dataset import DarknetDataset
from darknet_torch.distributed import DistContext, init_distributed, shutdown
from darknet_torch.errors import CfgError, DarknetError
from darknet_torch.files import prepare_output_dir, remove_stale_temps
from darknet_torch.model.darknet import Darknet
from darknet_torch.runtime import BFLOAT16_CPUS, loader_workers, native_bfloat16, select_device
from darknet_torch.train.checkpoint import CheckpointPaths, basecfg, load_state
from darknet_torch.train.loop import Evaluator, LoopOptions, Trainer, TrainResult, darknet_map_every, \
    darknet_save_every
from darknet_torch.train.optim import TrainSettings, darknet_init_, keys_not_applied
from darknet_torch.train.previews import BatchPreviews

log = logging.getLogger(__name__)

#: ``.data`` keys read here (Darknet's ``saveweights``/``savelast``), so they are not reported as unused.
_SAVE_KEYS = ("saveweights", "savelast")
_BACKBONE_NAME = re.compile(r"\.conv\.\d+$")


@dataclass(frozen=True)
class TrainOptions:
    """Everything ``darknet_torch train`` accepts; ``None`` means Darknet's default."""

    data: Path
    cfg: Path
    weights: Path | None = None
    partial: bool | None = None  # weights may end early; None: only for names like x.conv.N
    clear: bool = False  # start at iteration 0 whatever the weights' header says
    resume: Path | bool = False  # a <cfg>_last.pt training state; True: <backup>/<cfg>_last.pt
    device: str | None = None
    workers: int | None = None  # data-loading processes; None: 4 with CUDA, 0 on the CPU (runtime.loader_workers)
    seed: int = 0
    calc_map: bool = False
    map_every: int | None = None
    ema_alpha: float | None = None
    amp: bool | None = None  # mixed precision (CUDA float16, CPU bfloat16); None: on with CUDA
    channels_last: bool | None = None  # NHWC memory format; None: on with the CPU (measured faster there)
    sparsity: float = 0.0  # network slimming's L1 penalty on batch-norm scales, per image
    backup: Path | None = None
    progress: bool = True
    log_every: int = 1  # a results_<cfg>.csv row every N iterations
    tensorboard: bool = True  # also TensorBoard scalars when it is installed
    show_imgs: int = 0  # save mosaics of the first N iterations' batches (Darknet's -show_imgs)


def train(options: TrainOptions) -> TrainResult:
    """Run (or resume) a training; returns the last iteration's numbers.  Under torchrun, one call per process."""
    ctx = init_distributed(options.device)
    try:
        trainer = build_trainer(options, ctx)
        return trainer.run()
    finally:
        shutdown(ctx)


def build_trainer(options: TrainOptions, ctx: DistContext | None = None) -> Trainer:
    """Read the files, build model/optimizer/data/evaluator and position the trainer at its start iteration.

    ``ctx``: this process's place in a distributed job (default: one process on ``options.device``)."""
    ctx = ctx or DistContext(device=select_device(options.device))
    data = DarknetDataset.from_data_file(options.data, used_keys=_SAVE_KEYS)
    backup = Path(options.backup or data.config.backup or "backup")
    paths = CheckpointPaths(backup, basecfg(options.cfg))
    if ctx.is_main:
        prepare_output_dir(paths.backup)  # a backup folder that cannot be written fails before any work
    state_path = (paths.state if options.resume is True else Path(options.resume)) if options.resume else None
    state = load_state(state_path) if state_path else None
    seed = options.seed if state is None else state["seed"]  # the data stream of a resumed run is the saved one
    if state is not None and seed != options.seed and ctx.is_main:
        log.info("resuming with the training state's seed %d", seed)
    workers = loader_workers(ctx.device, 4) if options.workers is None else options.workers
    options = dataclasses.replace(options, seed=seed, workers=workers)
    torch.manual_seed(seed)
    model = Darknet(options.cfg)
    model.check_rgb_input("training")
    settings = TrainSettings.from_net(model.net)
    if ctx.is_main:
        for message in keys_not_applied(model):
            log.warning(message)
    start = _load_initial_weights(model, options, settings)
    model.to(ctx.device)
    evaluator, map_every = _evaluator(data, model, options, settings) if options.calc_map else (None, None)
    loop_options = LoopOptions(
        save_every=_data_int(data, "saveweights", darknet_save_every(settings.max_batches)),
        save_last_every=_data_int(data, "savelast", 100), map_every=map_every,
        amp=_mixed_precision(options.amp, ctx),
        channels_last=ctx.device.type == "cpu" if options.channels_last is None else options.channels_last,
        progress=options.progress, log_every=options.log_every, tensorboard=options.tensorboard,
        seed=seed, max_chart_loss=model.net.max_chart_loss, sparsity=options.sparsity)
    names = data.names() if data.config.names is not None else [str(i) for i in range(model.num_classes)]
    previews = BatchPreviews(paths.previews, names, options.show_imgs)
    trainer = Trainer(model, settings, _batch_source(data, model, options, ctx), paths, loop_options, ctx,
                      evaluator, ema_alpha=options.ema_alpha, previews=previews)
    if state is not None:
        trainer.load_state_dict(state, str(state_path))
    else:
        trainer.start_at(start)
    if ctx.is_main:
        for stale in remove_stale_temps(paths.backup, paths.own_names):
            log.info("removed %s, left by an interrupted save", stale)
        log.info("training %s: batch %d (%d x %d) on %d process(es), iterations %d..%d, backup %s", options.cfg,
                 settings.batch, settings.subdivisions, settings.mini_batch, ctx.world_size, trainer.iteration,
                 settings.max_batches, paths.backup)
    return trainer


def _mixed_precision(requested: bool | None, ctx: DistContext) -> bool:
    """``--amp`` as asked (default: on with CUDA), but off on a CPU without native bfloat16 convolutions, where CPU
    autocast's bfloat16 would make each step several times slower than float32 (a warning says so)."""
    amp = ctx.device.type == "cuda" if requested is None else requested
    if amp and ctx.device.type == "cpu" and not native_bfloat16(ctx.device):
        if ctx.is_main:
            log.warning("--amp: this CPU (%s) has no bfloat16 convolution kernels (%s), where bfloat16 is several "
                        "times slower than float32; training in float32", torch.backends.cpu.get_cpu_capability(),
                        BFLOAT16_CPUS)
        return False
    return amp


def _load_initial_weights(model: Darknet, options: TrainOptions, settings: TrainSettings) -> int:
    """Weights (or Darknet's random init) and the iteration they start at: ``seen / batch`` unless ``--clear``."""
    if options.resume:
        if options.weights is not None:
            log.warning("--resume: ignoring --weights %s (the training state holds the model)", options.weights)
        return 0
    if options.weights is None:
        darknet_init_(model, torch.Generator().manual_seed(options.seed))
        return 0
    partial = options.partial if options.partial is not None else bool(_BACKBONE_NAME.search(options.weights.name))
    model.load_darknet_weights(options.weights, partial=partial)
    return 0 if options.clear else model.header.seen // settings.batch


def _data_int(data: DarknetDataset, key: str, default: int) -> int:
    text = data.config.extra.get(key)
    if text is None:
        return default
    if not DIGITS_TEXT.fullmatch(text) or int(text) < 1:
        raise CfgError(f"{data.path}: {key}={text!r} must be a positive number of iterations")
    return int(text)


def _batch_source(data: DarknetDataset, model: Darknet, options: TrainOptions, ctx: DistContext):
    """The data pipeline's loader, restartable at any iteration; the data report is checked and shown once."""
    from darknet_torch.data.training import build_train_loader

    report = data.training_report(model.num_classes)
    if ctx.is_main:
        log.info("%s", report.format())
    report.check()
    heads = [model.layer_infos[i].section for i in model.head_indices]
    return lambda start: build_train_loader(data, model.net, heads, options.workers, options.seed, start,
                                            ctx.rank, ctx.world_size, report=report, stride=model.stride)


def _evaluator(data: DarknetDataset, model: Darknet, options: TrainOptions,
               settings: TrainSettings) -> tuple[Evaluator, int]:
    """mAP@0.5 on ``valid`` (Darknet: defaults to ``train``) and Darknet's evaluation period; the validation labels
    are scanned once, here, and an image whose label file cannot be named stops training now rather than at the first
    evaluation."""
    try:
        from darknet_torch.evaluate.runner import check_class_counts, evaluate
    except ImportError as exc:
        raise DarknetError(f"--map needs darknet_torch.evaluate.runner, which cannot be imported ({exc}); "
                           f"train without --map") from exc
    names = data.names("--map needs the class names")
    check_class_counts(model, names, model.num_classes)
    list_path = data.validation_list()
    images = data.images(list_path)
    scan = data.scan(list_path, model.num_classes)
    scan.check_label_paths()
    every = options.map_every or darknet_map_every(len(data.images(data.train_list())), settings.batch)

    def map50(net: Darknet) -> float:
        report = evaluate(net, images, names, model.num_classes, workers=options.workers, progress=False,
                          scan=scan)
        return float(report.map)

    return map50, every
