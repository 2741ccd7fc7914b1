"""Detection on a frame source with decoding, inference and output in three overlapping stages.

    reader thread       decode a frame, fit it to the network (Darknet's resize/letterbox)
        -> bounded queue ->
    calling thread      batches of the frames that are ready (up to ``batch_size``): the forward pass
        -> bounded queue ->
    output thread       boxes and NMS, tracker, drawing, video encoding, JSON lines, label files, HTTP streams,
                        printout

When a file's forward runs on every core, the reader and output threads work only between forward passes
(:mod:`darknet_torch.video.turns`: a core taken from the forward's OpenMP team stalls the whole team) and the
forward waits for full batches; with a core left to them everything overlaps.

Files are processed frame by frame (a full queue makes the reader wait).  Live sources run in latest-frame mode:
the reader replaces a frame still waiting in the queue, so inference always takes the newest one and the output
never falls behind (the report counts the dropped frames).  Every output is closed on every exit path, including
Ctrl-C and SIGTERM (raised as KeyboardInterrupt by the CLI), so the video written so far is complete and playable.
"""
from __future__ import annotations

import copy
import io
import itertools
import json
import os
import queue
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor
from PIL import Image
from tqdm import tqdm

from darknet_torch.files import STDOUT, prepare_output_dir, refuse_overwriting_sources
from darknet_torch.detect.outputs_draw import draw_detections_on_array
from darknet_torch.detect.outputs_format import darknet_json_frame, label_lines, select_boxes
from darknet_torch.detect.predictor import Detection, Predictor
from darknet_torch.errors import DataError
from darknet_torch.files import write_atomic
from darknet_torch.openmp import available_cores
from darknet_torch.video.averaging import without_averaging
from darknet_torch.video.sources import Frame, FrameSource
from darknet_torch.video.streaming import StreamServer
from darknet_torch.video.tracker import IoUTracker
from darknet_torch.video.tuning import ForwardThreads, candidates, differs_on_other_counts
from darknet_torch.video.turns import CoreTurns
from darknet_torch.video.writer import OUTPUT_EXTENSIONS, VideoWriter

_END = object()


@dataclass(frozen=True)
class VideoOutputs:
    """What to produce.  ``video``: annotated video (codec by extension); ``json_lines``: one Darknet ``-out``
    JSON object per frame and line (``-``: standard output); ``labels_dir``: Darknet label files
    ``<stem>_<frame>.txt``; ``*_port``: HTTP streams on ``host``; ``track``: give objects track ids (in the JSON and on
    the boxes)."""

    video: Path | None = None
    json_lines: Path | None = None
    labels_dir: Path | None = None
    mjpeg_port: int | None = None
    json_port: int | None = None
    host: str = "127.0.0.1"
    track: bool = True


@dataclass(frozen=True)
class FrameResult:
    """Detections of one frame; ``frame_id`` counts from 1 in the source (live sources skip dropped frames)."""

    frame_id: int
    width: int
    height: int
    detections: list[Detection]
    #: Track id of each drawn box, keyed by its (x, y, w, h).
    track_ids: dict[tuple[float, float, float, float], int] = field(default_factory=dict)


@dataclass
class VideoReport:
    source: str
    frames: int = 0
    dropped: int = 0
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False
    #: The forward's torch threads at the end of the run (chosen by the trial: :mod:`darknet_torch.video.tuning`).
    forward_threads: int | None = None
    results: list[FrameResult] = field(default_factory=list)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def ok(self) -> bool:
        return not self.errors and not self.interrupted


@dataclass
class _Prepared:
    frame: Frame
    input: object
    info: object


def run_video(predictor: Predictor, source: FrameSource, outputs: VideoOutputs = VideoOutputs(), *,
              batch_size: int = 4, max_frames: int | None = None, progress: bool | None = None,
              keep_results: bool = False, on_frame: Callable[[FrameResult], None] | None = None,
              forward_threads: int | None = None) -> VideoReport:
    """Detect on every frame of ``source`` (live: the newest frames) and write ``outputs``.

    ``on_frame`` is called from the output thread for each frame, in order (e.g. to print);
    ``keep_results`` keeps every :class:`FrameResult` in the report (memory grows with the video);
    ``forward_threads``: torch threads of the forward pass (default: the faster of the caller's threads and one
    fewer, measured on the first batches, or the caller's when the other count changes the first batch's outputs:
    :mod:`darknet_torch.video.tuning`); the caller's setting is restored at the end.

    Raises:
        DataError: an output cannot be created, would replace the source (:func:`refuse_overwriting_source`), or a
            port cannot be bound (before any frame is processed).
    """
    report = VideoReport(source.name)
    turns = CoreTurns(enabled=False)
    try:
        sink = _OutputStage(predictor, source, outputs, report, keep_results, on_frame, turns)
    except BaseException:
        source.close()
        raise
    bar = tqdm(total=None if source.live else (min(source.expected_frames or 0, max_frames or 1 << 62) or None),
               unit="frame", desc=Path(source.name).name or source.name, dynamic_ncols=True,
               disable=True if progress is False else None)
    sink.bar = bar
    inputs: queue.Queue = queue.Queue(maxsize=1 if source.live else 2 * batch_size)
    stop = threading.Event()
    reader = threading.Thread(target=_read, args=(predictor, source, inputs, stop, max_frames, report, turns),
                              name="video-reader", daemon=True)
    start = time.perf_counter()
    reader.start()
    sink.start()
    caller_threads = torch.get_num_threads()
    threads = ForwardThreads([forward_threads] if forward_threads else candidates(caller_threads))
    try:
        _forward_batches(predictor, inputs, sink, batch_size, threads, turns, source.live)
    except KeyboardInterrupt:
        report.interrupted = True
    finally:
        report.forward_threads = threads.chosen or threads.threads()
        torch.set_num_threads(caller_threads)
        turns.set_enabled(False)
        stop.set()
        sink.finish()
        reader.join(timeout=5)
        if not reader.is_alive():  # else it is blocked in a device read: closing under it is unsafe; exit ends it
            source.close()
        bar.close()
        report.seconds = time.perf_counter() - start
    report.errors[:0] = source.errors
    return report


def _forward_batches(predictor: Predictor, inputs: queue.Queue, sink: _OutputStage, batch_size: int,
                     threads: ForwardThreads, turns: CoreTurns, live: bool) -> None:
    """The calling thread's loop: batches through the network on ``threads``' thread count.  For a file (not
    ``live``), a forward on every core takes ``turns`` with the side work and waits for a full batch; otherwise a
    batch is the frames that are ready, up to ``batch_size``.  The first batch's first frame runs on every count of
    ``threads``: if any output bit differs, the trial is off (the detections must not depend on which count a timing
    chose)."""
    cores = available_cores()
    done, checked = False, False
    while not done:
        count = threads.threads()
        turns.set_enabled(not live and count >= cores > 1)
        full_batches = turns.enabled
        batch = [inputs.get()]
        while len(batch) < batch_size and batch[-1] is not _END:
            try:
                batch.append(inputs.get() if full_batches else inputs.get_nowait())
            except queue.Empty:
                break
        if batch[-1] is _END:
            batch.pop()
            done = True
        if batch:
            inputs_batch = torch.stack([p.input for p in batch])
            torch.set_num_threads(count)
            with turns.forward():
                output = predictor.forward_batch(inputs_batch)
                if not checked:
                    _keep_count_if_outputs_depend_on_it(predictor, threads, count, inputs_batch, output)
                    checked = True
            sink.put(batch, output, inputs_batch.shape[-2:])
            threads.done(len(batch))


def _keep_count_if_outputs_depend_on_it(predictor: Predictor, threads: ForwardThreads, count: int, batch: Tensor,
                                        output: Tensor) -> None:
    """Run the batch's first frame (a fraction of the batch's time on a slower count) on ``threads``' other counts;
    if any output bit differs from ``count``'s, keep ``count``.  Under ``-avgframes`` the network runs without the
    averaging: repeated frames would enter its history (and the means would differ, whatever the bits)."""
    others = [n for n in threads.candidates if n != count]
    if others:
        bare = copy.copy(predictor)  # shares everything but the model
        bare.model = without_averaging(predictor.model)
        first = batch[:1]
        reference = output if len(batch) == 1 and bare.model is predictor.model else bare.forward_batch(first)
        if differs_on_other_counts(bare.forward_batch, first, reference, others):
            threads.keep(count)


def _read(predictor: Predictor, source: FrameSource, inputs: queue.Queue, stop: threading.Event,
          max_frames: int | None, report: VideoReport, turns: CoreTurns) -> None:
    """Reader thread: decode and prepare frames (one side item each); on a live source keep only the newest waiting
    frame."""
    torch.set_num_threads(1)  # this thread's own OpenMP team: the forward pass keeps every core's thread
    frames = source.frames()
    try:
        for count in itertools.count(1):
            with turns.side():
                frame = next(frames, None)
                if frame is None:
                    break
                network_input, info = predictor.prepare_u8(frame.image)
            item = _Prepared(frame, network_input, info)
            if source.live:
                try:
                    inputs.get_nowait()
                    report.dropped += 1
                except queue.Empty:
                    pass
                inputs.put(item)
            else:
                _put_unless_stopped(inputs, item, stop)
            if stop.is_set() or (max_frames is not None and count >= max_frames):
                break
    except Exception as exc:  # noqa: BLE001 (reported as this source's error, the outputs are still finalised)
        report.errors.append(f"{source.name}: reading failed: {exc}")
    finally:
        _put_unless_stopped(inputs, _END, stop)


def _put_unless_stopped(inputs: queue.Queue, item: object, stop: threading.Event) -> None:
    """Wait for room in ``inputs``, unless the pipeline stops meanwhile (then nobody reads it any more)."""
    while not stop.is_set():
        try:
            inputs.put(item, timeout=0.2)
            return
        except queue.Full:
            continue


class _OutputStage:
    """The output thread: everything done with a frame's detections, in frame order."""

    def __init__(self, predictor: Predictor, source: FrameSource, outputs: VideoOutputs, report: VideoReport,
                 keep_results: bool, on_frame: Callable[[FrameResult], None] | None, turns: CoreTurns) -> None:
        self.predictor, self.turns = predictor, turns
        self.num_classes, self.thresh = predictor.model.num_classes, predictor.thresh
        self.source, self.outputs, self.report = source, outputs, report
        self.keep_results, self.on_frame = keep_results, on_frame
        self.tracker = IoUTracker() if outputs.track else None
        self.bar: tqdm | None = None
        self.queue: queue.Queue = queue.Queue(maxsize=2)  # batches
        self._closers: list[Callable[[], None]] = []
        try:
            self._open()
        except BaseException:
            self._close_all()
            raise
        self.thread = threading.Thread(target=self._run, name="video-output", daemon=True)

    def _open(self) -> None:
        o = self.outputs
        self.video = self.json_file = self.mjpeg = self.json_stream = None
        refuse_overwriting_source(self.source, o)
        if o.video is not None:
            self.video = VideoWriter(o.video, self.source.fps)
            self._closers.append(self.video.close)
        if o.json_lines is not None and str(o.json_lines) == STDOUT:
            self.json_file = sys.stdout
        elif o.json_lines is not None:
            try:
                o.json_lines.parent.mkdir(parents=True, exist_ok=True)
                self.json_file = open(o.json_lines, "w", encoding="utf-8")  # noqa: SIM115 (closed by finish)
            except OSError as exc:
                raise DataError(f"{o.json_lines}: cannot write ({exc.strerror or exc})") from None
            self._closers.append(self.json_file.close)
        if o.labels_dir is not None:
            prepare_output_dir(o.labels_dir)
        if o.mjpeg_port is not None:
            self.mjpeg = StreamServer("mjpeg", o.mjpeg_port, o.host)
            self._closers.append(self.mjpeg.close)
        if o.json_port is not None:
            self.json_stream = StreamServer("json", o.json_port, o.host)
            self._closers.append(self.json_stream.close)

    def start(self) -> None:
        self.thread.start()

    def put(self, batch: list[_Prepared], output: torch.Tensor, input_hw: tuple[int, int]) -> None:
        """Queue a batch's network output; its boxes and NMS are done in this stage's thread, overlapping the next
        batch's forward (they would otherwise wait for each other in the calling thread)."""
        self.queue.put((batch, output, input_hw))

    def finish(self) -> None:
        """Process what is queued, then close every output (the video gets its trailer)."""
        self.queue.put(_END)
        self.thread.join()
        self._close_all()

    def _close_all(self) -> None:
        for close in reversed(self._closers):
            try:
                close()
            except Exception as exc:  # noqa: BLE001 (a failed close is reported, the others still run)
                self.report.errors.append(f"closing an output failed: {exc}")
        self._closers.clear()

    def _run(self) -> None:
        torch.set_num_threads(1)  # (the tracker's IoU) as in the reader thread
        while (item := self.queue.get()) is not _END:
            batch, output, input_hw = item
            with self.turns.side():
                found = self._detections(batch, output, input_hw)
            for prepared, detections in zip(batch, found):
                try:
                    with self.turns.side():
                        self._handle(prepared.frame, detections)
                except Exception as exc:  # noqa: BLE001 (reported; later frames still go out)
                    self.report.errors.append(f"frame {prepared.frame.index + 1}: {exc}")

    def _detections(self, batch: list[_Prepared], output: torch.Tensor,
                    input_hw: tuple[int, int]) -> list[list[Detection]]:
        """Each frame's detections from the batch's network output; none (and the error reported) if that fails."""
        try:
            found = self.predictor.detections_from_output(output, input_hw, [p.info for p in batch])
            return [self.predictor.to_detections(dets) for dets in found]
        except Exception as exc:  # noqa: BLE001 (reported; later batches still go out)
            self.report.errors.append(f"frames {batch[0].frame.index + 1}-{batch[-1].frame.index + 1}: {exc}")
            return []

    def _handle(self, frame: Frame, detections: list[Detection]) -> None:
        width, height = frame.size
        boxes = [box.best for box in select_boxes(detections, self.thresh)]
        track_ids = {}
        if self.tracker is not None:
            track_ids = {(b.x, b.y, b.w, b.h): i for b, i in zip(boxes, self.tracker.update(boxes))}
        result = FrameResult(frame.index + 1, width, height, detections, track_ids)
        if self.video is not None or self.mjpeg is not None:
            drawn = self._annotated(frame.image, detections, track_ids) if boxes else frame.image
            if self.video is not None:
                self._guard("video", self.outputs.video, lambda: self.video.write(drawn))
            if self.mjpeg is not None:
                buffer = io.BytesIO()
                Image.fromarray(drawn).save(buffer, format="JPEG", quality=80)
                self.mjpeg.publish(buffer.getvalue())
        if self.json_file is not None or self.json_stream is not None:
            record = darknet_json_frame(result.frame_id, self.source.name, detections, track_ids)
            line = json.dumps(record, ensure_ascii=False)
            if self.json_file is not None:
                self._guard("json_file", self.outputs.json_lines, lambda: (self.json_file.write(line + "\n"),
                                                                           self.json_file.flush()))
            if self.json_stream is not None:
                self.json_stream.publish(line.encode())
        if self.outputs.labels_dir is not None:
            path = self.outputs.labels_dir / f"{Path(self.source.name).stem}_{result.frame_id:06d}.txt"
            lines = label_lines(detections, self.thresh)
            self._guard(None, path, lambda: write_atomic(path, "".join(f"{x}\n" for x in lines).encode()))
        self.report.frames += 1
        if self.keep_results:
            self.report.results.append(result)
        if self.on_frame is not None:
            self.on_frame(result)
        if self.bar is not None:
            self.bar.update(1)

    def _annotated(self, image: np.ndarray, detections: list[Detection],
                   track_ids: dict[tuple[float, float, float, float], int]) -> np.ndarray:
        """A copy of ``image`` with the boxes drawn (not in place: a source may hand out one array for several
        frames; the copy costs a tenth of a round trip through a Pillow image)."""
        drawn = image.copy()
        draw_detections_on_array(drawn, detections, self.num_classes, self.thresh, track_ids)
        return drawn

    def _guard(self, output: str | None, path: Path | None, work: Callable[[], object]) -> None:
        """Run one write; a failure is reported with its path and, for a stream ``output``, ends that output
        (the file stays closed and finalised by what was written before)."""
        try:
            work()
        except (OSError, ValueError) as exc:
            self.report.errors.append(f"{path}: cannot write: {getattr(exc, 'strerror', None) or exc}")
            if output is not None:
                setattr(self, output, None)


def refuse_overwriting_source(source: FrameSource, outputs: VideoOutputs) -> None:
    """Refuse ``outputs`` whose video or JSON lines file is one of ``source``'s files (``demo clip.mp4 --output
    .``): opening the writer would truncate the video before a frame is read.

    Raises:
        DataError: naming the output and the source.
    """
    refuse_overwriting_sources([p for p in (outputs.video, outputs.json_lines) if p is not None], source.files())


def default_output_paths(output_dir: Path, source: str | os.PathLike[str], name: str | None = None
                         ) -> tuple[Path, Path]:
    """Annotated video and JSON lines for a video file in ``detect``'s output folder: ``<name><ext>`` (``.mp4``
    when the source's container cannot be written) and ``<name>.jsonl``; ``name`` defaults to the source's stem
    (several videos take unique names from :func:`darknet_torch.detect.outputs.output_names`)."""
    source = Path(source)
    suffix = source.suffix.lower() if source.suffix.lower() in OUTPUT_EXTENSIONS else ".mp4"
    name = name or source.stem
    return output_dir / f"{name}{suffix}", output_dir / f"{name}.jsonl"
