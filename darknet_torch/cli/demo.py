"""``darknet_torch demo``: Darknet's ``detector demo`` on a video file, camera, network stream or image sequence.

Darknet's demo flags are options in Darknet's spelling (``-c 0``, ``-out_filename out.mp4``, ``-json_port 8070``,
``-mjpeg_port 8090``, ``-avgframes 3``); the common ones (``-thresh``, ``-ext_output``, ``-out``, ``-letter_box``,
``-dont_show``, ``-i``) reach their ``--options`` through cli/darknet_flags.py, so ``darknet_torch detector demo DATA
CFG WEIGHTS FILE -flags`` forwards here as ``demo FILE --data DATA --cfg CFG --weights WEIGHTS -flags``.

Exit status: 0 when every frame was processed and written, 1 when frames were lost (truncated or corrupt video, a
stream that did not come back) or an output failed mid-run (what was written stays playable), 2 for a usage or
configuration error (missing file, not a video, camera not present, unwritable output, port in use, the ``video``
extra missing), reported before any frame is processed; 130 when interrupted (Ctrl-C, SIGTERM).
"""
from __future__ import annotations

import argparse
import signal
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Sequence, TextIO

from tqdm import tqdm

from darknet_torch.cli.detect import DEFAULT_CFG, DEFAULT_SOURCE, DEFAULT_WEIGHTS, resolve_names
from darknet_torch.cli.options import (add_detection_options, add_fast_argument, inference_settings,
                                       non_negative_int, port_number, positive_float, positive_int)
from darknet_torch.config.sections import DIGITS_TEXT
from darknet_torch.detect.build import build_predictor, load_for_inference
from darknet_torch.detect.outputs import output_names
from darknet_torch.detect.outputs_format import darknet_printout
from darknet_torch.detect.predictor import Predictor
from darknet_torch.detect.settings import DETECTOR_TEST
from darknet_torch.detect.sources import expand_sources
from darknet_torch.errors import CfgError, DataError
from darknet_torch.files import human_stream, prepare_output_dir, prepare_output_file
from darknet_torch.runtime import select_device
from darknet_torch.video.averaging import FrameAveraging
from darknet_torch.video.pipeline import (FrameResult, VideoOutputs, VideoReport, default_output_paths,
                                          refuse_overwriting_source, run_video)
from darknet_torch.video.sources import is_stream_url, open_source

DEFAULT_OUTPUT = "runs/demo"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", allow_abbrev=False, help="detect and track on a video, camera, stream or image sequence",
                       description="Darknet's 'detector demo': annotated video, per-frame JSON lines with track ids, "
                                   "MJPEG and JSON streams over HTTP. Needs the 'video' extra (PyAV).")
    p.add_argument("source", nargs="?", metavar="SOURCE",
                   help="video file, camera index (0), rtsp:// or http:// URL, image folder/glob/.txt list")
    p.add_argument("-c", "--camera", type=non_negative_int, metavar="N", help="camera index (Darknet's -c)")
    p.add_argument("--cfg", default=DEFAULT_CFG, help="Darknet .cfg (default: %(default)s)")
    p.add_argument("--weights", default=DEFAULT_WEIGHTS, help="Darknet .weights or .pt (default: %(default)s)")
    names = p.add_mutually_exclusive_group()
    names.add_argument("--names", help="class names, one per line (default: data/coco.names for 80-class models)")
    names.add_argument("--data", help="Darknet .data file; its names= entry gives the class names")
    add_detection_options(p, DETECTOR_TEST)
    p.add_argument("--letter-box", action=argparse.BooleanOptionalAction, default=None,
                   help="keep the aspect ratio (default: [net] letter_box)")
    p.add_argument("--batch-size", type=positive_int, default=4,
                   help="frames per forward pass when several are ready (files; default: %(default)s)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or N (default: cuda if available)")
    add_fast_argument(p)
    p.add_argument("--avgframes", "-avgframes", type=positive_int, default=1, metavar="N",
                   help="detect on the network output averaged over the last N frames (Darknet's -avgframes)")
    p.add_argument("--output", default=DEFAULT_OUTPUT, help="folder for the default outputs (default: %(default)s)")
    p.add_argument("--out-video", "-out_filename", metavar="FILE",
                   help="annotated video; codec from the extension: .mp4/.mkv/.mov H.264, .avi MJPEG, .webm VP9, "
                        ".nut FFV1 lossless (default: OUTPUT/<source>.mp4)")
    p.add_argument("--no-save-video", action="store_true", help="no annotated video")
    p.add_argument("--json", metavar="FILE",
                   help="per-frame JSON lines, Darknet's -out objects; '-' for standard output (default: "
                        "OUTPUT/<source>.jsonl)")
    p.add_argument("--no-json", action="store_true", help="no JSON lines file")
    p.add_argument("--save-labels", action="store_true",
                   help="Darknet label files per frame in OUTPUT/labels/<source>_<frame>.txt")
    p.add_argument("--mjpeg-port", "-mjpeg_port", type=port_number, metavar="PORT",
                   help="serve the annotated frames as an MJPEG stream on http://HOST:PORT/")
    p.add_argument("--json-port", "-json_port", type=port_number, metavar="PORT",
                   help="serve the detections as Darknet's JSON stream on http://HOST:PORT/")
    p.add_argument("--host", default="127.0.0.1",
                   help="address of the HTTP streams (default: %(default)s, this machine only)")
    p.add_argument("--ext-output", action="store_true",
                   help="print each frame's detections with their boxes in pixels (Darknet's -ext_output)")
    p.add_argument("--no-track", action="store_true", help="no track ids")
    p.add_argument("--max-frames", type=positive_int, metavar="N", help="stop after N frames (cameras and streams)")
    p.add_argument("--fps", type=positive_float, help="frame rate of image sequences and of the output (default: the "
                   "source's, 25 for images)")
    p.add_argument("--retries", type=non_negative_int, default=5,
                   help="reconnection attempts when a stream drops, with doubling back-off (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def source_stem(spec: str) -> str:
    """File-name stem for a source's default outputs: ``video`` for video.mp4, ``camera0``, ``stream``."""
    if DIGITS_TEXT.fullmatch(spec):
        return f"camera{spec}"
    if is_stream_url(spec):
        return "stream"
    return Path(spec.rstrip("/*")).stem or "frames"


def demo_predictor(args: argparse.Namespace) -> Predictor:
    """The model and settings the arguments ask for; ``-avgframes N`` wraps the network (see
    :mod:`darknet_torch.video.averaging`)."""
    settings = inference_settings(args, DETECTOR_TEST)
    model, settings = load_for_inference(args.cfg, args.weights, select_device(args.device), settings)
    calibration = expand_sources([DEFAULT_SOURCE]) if settings.fast == "int8" else []
    predictor = build_predictor(model, settings, names=resolve_names(args, model.num_classes),
                                calibration=calibration)
    if args.avgframes > 1:
        predictor.model = FrameAveraging(predictor.model, args.avgframes)
    return predictor


def frame_printer(thresh: float, file: TextIO | None = None) -> Callable[[FrameResult], None]:
    """Darknet's ``-ext_output`` lines for each frame, to ``file`` (default: standard output)."""
    def show(result: FrameResult) -> None:
        lines = [f"Frame {result.frame_id}: Objects:"]
        lines += darknet_printout(result.detections, result.width, result.height, thresh, ext_output=True)
        tqdm.write("\n".join(lines), file=file or sys.stdout)
    return show


def summary(report: VideoReport, outputs: VideoOutputs) -> str:
    written = [str(p) for p in (outputs.video, outputs.json_lines, outputs.labels_dir) if p is not None]
    dropped = f", {report.dropped} dropped (latest-frame mode)" if report.dropped else ""
    return (f"{report.source}: {report.frames} frames{dropped} in {report.seconds:.1f} s ({report.fps:.1f} frames/s)"
            + (f"; written: {', '.join(written)}" if written else ""))


def finish(report: VideoReport, outputs: VideoOutputs, lines_to: TextIO) -> int:
    """Print the errors (standard error) and the summary (``lines_to``); the exit status of one video."""
    for message in report.errors:
        print(f"error: {message}", file=sys.stderr)
    print(summary(report, outputs), file=lines_to)
    if report.interrupted:
        print("interrupted: the outputs hold the frames processed so far", file=sys.stderr)
        return 130
    return 0 if report.ok else 1


def video_file_outputs(videos: Sequence[str], output_dir: str | Path, *, save_video: bool = True,
                       save_json: bool = True, save_labels: bool = False) -> list[VideoOutputs]:
    """``detect``'s outputs of each video file: ``OUTPUT/<name>.<ext>`` (annotated) and ``OUTPUT/<name>.jsonl``,
    names unique among the videos as for images (``a/clip.mp4``, ``b/clip.mp4``: ``clip``, ``clip_2``)."""
    output_dir = Path(output_dir)
    outputs = []
    for video, name in zip(videos, output_names([Path(v) for v in videos])):
        path, json_lines = default_output_paths(output_dir, video, name)
        outputs.append(VideoOutputs(video=path if save_video else None, json_lines=json_lines if save_json else None,
                                    labels_dir=output_dir / "labels" if save_labels else None))
    return outputs


def run_video_files(predictor: Predictor, videos: Sequence[str], outputs: Sequence[VideoOutputs], *,
                    ext_output: bool = False, batch_size: int = 4, progress: bool | None = None,
                    lines_to: TextIO | None = None) -> int:
    """``detect`` on video files, each with its outputs (:func:`video_file_outputs`), printing to ``lines_to``
    (default: standard output); the worst exit status of the videos (a missing or unreadable video is reported and
    the others still run)."""
    lines_to = lines_to or sys.stdout
    status = 0
    for video, planned in zip(videos, outputs):
        try:
            source = open_source(video)
        except DataError as exc:
            print(f"error: {exc}", file=sys.stderr)
            status = max(status, 1)
            continue
        with sigterm_as_interrupt():
            report = run_video(predictor, source, planned, batch_size=batch_size, progress=progress,
                               on_frame=frame_printer(predictor.thresh, lines_to) if ext_output else None)
        status = max(status, finish(report, planned, lines_to))
        if report.interrupted:
            break
    return status


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM ends the run like Ctrl-C (KeyboardInterrupt), so the outputs are finalised."""
    def interrupt(signum, frame) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(args: argparse.Namespace) -> int:
    if args.camera is not None and args.source is not None:
        raise CfgError("give either SOURCE or -c N (a camera), not both")
    spec = str(args.camera) if args.camera is not None else args.source
    if spec is None:
        raise CfgError("no source: pass a video file, a camera index (-c 0), a stream URL or an image folder")
    output, stem = Path(args.output), source_stem(spec)
    outputs = VideoOutputs(
        video=None if args.no_save_video else Path(args.out_video or output / f"{stem}.mp4"),
        json_lines=None if args.no_json else Path(args.json or output / f"{stem}.jsonl"),
        labels_dir=output / "labels" if args.save_labels else None,
        mjpeg_port=args.mjpeg_port, json_port=args.json_port, host=args.host, track=not args.no_track)
    for path in (outputs.video, outputs.json_lines):  # unwritable outputs fail before the source and the model
        if path is not None:
            prepare_output_file(path)
    if outputs.labels_dir is not None:
        prepare_output_dir(outputs.labels_dir)
    source = open_source(spec, fps=args.fps, retries=args.retries)
    try:
        refuse_overwriting_source(source, outputs)
        predictor = demo_predictor(args)
    except BaseException:
        source.close()
        raise
    lines_to = human_stream(outputs.json_lines)
    printer = frame_printer(args.thresh, lines_to) if args.ext_output else None
    with sigterm_as_interrupt():
        report = run_video(predictor, source, outputs, batch_size=args.batch_size, max_frames=args.max_frames,
                           progress=False if args.no_progress else None, on_frame=printer)
    return finish(report, outputs, lines_to)
