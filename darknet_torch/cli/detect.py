"""``darknet_torch detect``: Darknet's ``detector test`` over images, folders, lists and globs.

Exit status: 0 when every image was detected and every file written, 1 when any image or file failed (the others
are still processed and written), 2 for a usage or configuration error (bad cfg, missing weights, no images, an
output folder that cannot be written), reported before any image is processed.

Under ``torchrun --nproc_per_node=N -m darknet_torch detect ...`` each process detects whole batches of the images
and writes their files; rank 0 prints every line in input order and writes the JSON files, exactly as one process.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Sequence, TextIO

from tqdm import tqdm

from darknet_torch.cli.distributed import run_on_every_rank
from darknet_torch.cli.options import add_detection_options, add_inference_options, inference_settings
from darknet_torch.config.data_files import read_names
from darknet_torch.data.dataset import DarknetDataset
from darknet_torch.detect.build import build_predictor, load_for_inference
from darknet_torch.detect.outputs_format import darknet_printout
from darknet_torch.detect.pipeline import DetectReport, ImageResult, detect_images, prepare_image_outputs
from darknet_torch.detect.settings import DETECTOR_TEST
from darknet_torch.detect.sources import STDIN_SOURCE, expand_sources
from darknet_torch.distributed import DistContext
from darknet_torch.errors import CfgError
from darknet_torch.files import human_stream, refuse_overwriting_sources
from darknet_torch.video.sources import is_video_file

if TYPE_CHECKING:
    from darknet_torch.video.pipeline import VideoOutputs

log = logging.getLogger(__name__)

DEFAULT_SOURCE = "data/samples"
DEFAULT_CFG = "cfg/yolov4-tiny.cfg"
DEFAULT_WEIGHTS = "weights/yolov4-tiny.weights"
DEFAULT_NAMES = "data/coco.names"
DEFAULT_OUTPUT = "runs/detect"
#: Darknet's ``detect CFG WEIGHTS [IMAGE]`` shortcut (darknet.c) calls ``test_detector`` with ``-thresh`` default .24.
SHORT_FORM_THRESH = 0.24


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("detect", help="detect objects in images, folders, .txt lists or globs",
                       description="Darknet's 'detector test' with its exact boxes: annotated images, label files "
                                   "and JSON in an output folder.")
    p.add_argument("sources", nargs="*", metavar="SOURCE",
                   help=f"image, folder, .txt list of image paths, glob, or - for paths on standard input "
                        f"(default: {DEFAULT_SOURCE})")
    p.add_argument("--source", action="append", default=[], help="same as SOURCE (may be repeated)")
    p.add_argument("--recursive", action="store_true", help="also take images from sub-folders of folders")
    p.add_argument("--cfg", default=DEFAULT_CFG, help="Darknet .cfg (default: %(default)s)")
    p.add_argument("--weights", default=DEFAULT_WEIGHTS, help="Darknet .weights or darknet_torch .pt "
                   "(default: %(default)s)")
    names = p.add_mutually_exclusive_group()
    names.add_argument("--names", help=f"class names, one per line (default: {DEFAULT_NAMES} for 80-class models, "
                                       "else class numbers)")
    names.add_argument("--data", help="Darknet .data file; its names= entry gives the class names")
    add_detection_options(p, DETECTOR_TEST)
    p.set_defaults(thresh=None)  # 0.25, or 0.24 in Darknet's short form (take_darknet_files)
    add_inference_options(p, batch_size=4, workers=1,
                          letter_box_help="keep the aspect ratio (Darknet's -letter_box); default: [net] letter_box")
    p.add_argument("--output", default=DEFAULT_OUTPUT, help="output folder (default: %(default)s)")
    p.add_argument("--no-save-img", action="store_true", help="do not write annotated images")
    p.add_argument("--save-labels", action="store_true",
                   help="write Darknet label files (class cx cy w h, relative) to OUTPUT/labels/")
    p.add_argument("--crop", action="store_true",
                   help="write each detection cut out of its image to OUTPUT/crops/<class>/<image>_<n>.<ext>")
    p.add_argument("--json", "--out", metavar="FILE", help="Darknet -out JSON file; '-' for standard output "
                   "(default: OUTPUT/results.json)")
    p.add_argument("--no-json", action="store_true", help="do not write the JSON files")
    p.add_argument("--ext-output", action="store_true",
                   help="print Darknet's -ext_output lines (name: prob%% and box in pixels) for every image")
    p.add_argument("--print", action="store_true", dest="print_lines",
                   help="print Darknet's lines for every image (path: Predicted in ..., name: prob%%), as "
                        "'detector test' does; --ext-output adds the boxes")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def resolve_names(args: argparse.Namespace, num_classes: int) -> list[str] | None:
    """Class names from --names, --data, or the default COCO names for 80-class models (else None: numbers)."""
    if args.data:
        names_path = DarknetDataset.from_data_file(args.data).require("names", "pass --names, or add it")
    elif args.names:
        names_path = Path(args.names)
    elif num_classes == 80 and Path(DEFAULT_NAMES).is_file():
        names_path = Path(DEFAULT_NAMES)
    else:
        log.warning("no --names given: classes are shown as numbers")
        return None
    names = read_names(names_path)
    if len(names) < num_classes:
        raise CfgError(f"{names_path}: {len(names)} names but the network has classes={num_classes}")
    if len(names) > num_classes:
        log.warning("%s: %d names but the network has classes=%d; the extra names are unused",
                    names_path, len(names), num_classes)
    return names


def _printer(ext_output: bool, print_lines: bool, thresh: float, lines_to: TextIO):
    def show(result: ImageResult) -> None:
        if result.warning:
            tqdm.write(f"warning: {result.warning}", file=sys.stderr)
        if not result.ok:
            tqdm.write(f"error: {result.error}", file=sys.stderr)
        elif ext_output or print_lines:
            lines = [f"{result.path}: Predicted in {result.seconds * 1000:f} milli-seconds."]
            lines += darknet_printout(result.detections, result.width, result.height, thresh, ext_output)
            tqdm.write("\n".join(lines), file=lines_to)
    return show


def take_darknet_files(args: argparse.Namespace) -> None:
    """Darknet's short form ``detect CFG WEIGHTS [IMAGE]``: leading SOURCE arguments naming a ``.cfg`` and its
    weights set --cfg/--weights (when those are not given); as darknet.c's ``detect`` runs ``test_detector``, the
    per-image lines are printed, the threshold is 0.24 unless one is given, and without IMAGE the image paths come
    from standard input.  Otherwise the threshold defaults to ``detector test``'s 0.25."""
    sources = args.sources
    if (len(sources) >= 2 and sources[0].endswith(".cfg") and sources[1].endswith((".weights", ".pt"))
            and args.cfg == DEFAULT_CFG and args.weights == DEFAULT_WEIGHTS):
        args.cfg, args.weights, args.sources = sources[0], sources[1], sources[2:] or [STDIN_SOURCE]
        args.print_lines = True
        args.thresh = SHORT_FORM_THRESH if args.thresh is None else args.thresh
    args.thresh = DETECTOR_TEST.thresh if args.thresh is None else args.thresh


def run(args: argparse.Namespace) -> int:
    return run_on_every_rank(_detect, args)


def _check_outputs(args: argparse.Namespace, paths: list[Path], videos: list[str],
                   video_outputs: Sequence[VideoOutputs], json_path: str | None) -> None:
    """Before the model loads (the pipelines check again), exit 2 unless the output folder and the --json file can
    be written and no output file (of an image or a video) is one of the sources."""
    files, folders = [], []
    if paths:
        _, files, folders = prepare_image_outputs(paths, args.output, save_images=not args.no_save_img,
                                                  save_labels=args.save_labels, save_json=not args.no_json,
                                                  json_path=json_path, save_crops=args.crop)
    files += [p for o in video_outputs for p in (o.video, o.json_lines) if p is not None]
    refuse_overwriting_sources(files, [*paths, *videos], folders)


def _detect(args: argparse.Namespace, ctx: DistContext) -> int:
    take_darknet_files(args)
    if ctx.enabled and STDIN_SOURCE in [*args.sources, *args.source]:
        raise CfgError("under torchrun every process would read standard input: give the image paths in a .txt list")
    settings = inference_settings(args, DETECTOR_TEST)
    sources = [*args.sources, *args.source] or [DEFAULT_SOURCE]
    videos = [s for s in sources if is_video_file(s)]  # video files go through darknet_torch.video
    paths = expand_sources([s for s in sources if s not in videos], args.recursive) if len(videos) < len(sources) \
        else []
    json_path = None if args.no_json else args.json
    lines_to = human_stream(json_path)  # stderr when the JSON goes to stdout
    from darknet_torch.cli.demo import run_video_files, video_file_outputs  # demo imports this module's defaults

    video_outputs = video_file_outputs(videos, args.output, save_video=not args.no_save_img,
                                       save_json=not args.no_json, save_labels=args.save_labels)
    _check_outputs(args, paths, videos, video_outputs, json_path)
    model, settings = load_for_inference(args.cfg, args.weights, ctx.device, settings)
    predictor = build_predictor(model, settings, names=resolve_names(args, model.num_classes), calibration=paths)
    del model  # a --fast predictor runs a copy: keeping the original would hold its weights twice
    video_status = run_video_files(predictor, videos, video_outputs, ext_output=args.ext_output,
                                   batch_size=args.batch_size, progress=False if args.no_progress else None,
                                   lines_to=lines_to) if videos and ctx.is_main else 0
    if not paths:
        return video_status
    report = detect_images(
        predictor, paths, args.output, batch_size=args.batch_size, workers=args.workers, decoder=args.decoder,
        save_images=not args.no_save_img, save_labels=args.save_labels, save_json=not args.no_json,
        json_path=json_path, progress=False if args.no_progress else None, save_crops=args.crop,
        on_result=_printer(args.ext_output, args.print_lines, args.thresh, lines_to), ctx=ctx)
    if not ctx.is_main:
        return 0 if report.ok else 1
    return max(video_status, _summarise(report, lines_to))


def _summarise(report: DetectReport, lines_to: TextIO) -> int:
    """Print the file errors and the run's summary line; the images' exit status."""
    for message in report.write_errors:
        print(f"error: {message}", file=sys.stderr)
    done = len(report.results) - len(report.failed)
    boxes = sum(len(r.detections) for r in report.results)
    rate = len(report.results) / report.seconds if report.seconds > 0 else 0.0
    print(f"{done} of {len(report.results)} images detected ({boxes} detections) in {report.seconds:.1f} s "
          f"({rate:.1f} images/s); results in {report.output_dir}", file=lines_to)
    if not report.ok:
        print(f"{len(report.failed)} image(s) failed, {len(report.write_errors)} file(s) not written "
              "(see the errors above)", file=sys.stderr)
    return 0 if report.ok else 1
