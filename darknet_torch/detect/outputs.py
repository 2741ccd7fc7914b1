"""Writing detection results to an output folder: annotated images, label files, JSON.

Per-image files are written on a small thread pool so encoding a JPEG never delays the next forward pass; every
file is written atomically (temporary file + rename: a reader sees the old file or the whole new one) and every
failure is collected with the path it concerns, never dropped.

Layout of ``output_dir``::

    <name>.<ext>          annotated image (same format as the source when Pillow writes it, else PNG)
    labels/<name>.txt     Darknet -save_labels lines (only with save_labels)
    crops/<class>/<name>_<n>.<ext>   each shown detection cut out of the image (only with save_crops)
    results.json          Darknet -out JSON of all images (written by the pipeline at the end)
    coco_results.json     COCO results form, when every image has a numeric COCO id

``<name>`` is the image's file stem, made unique within the run (``dog``, ``dog_2``, ...).
"""
from __future__ import annotations

import io
import json
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Sequence

from PIL import Image

from darknet_torch.data.images import DEFAULT_MAX_PIXELS, Decoder, load_pixels
from darknet_torch.detect.outputs_crops import crops
from darknet_torch.detect.outputs_draw import draw_detections_on_array
from darknet_torch.detect.outputs_format import label_lines
from darknet_torch.detect.predictor import Detection
from darknet_torch.errors import DarknetError
from darknet_torch.files import write_atomic

# Source suffix -> (Pillow format, save options) for annotated images; anything else is written as PNG.
_SAVE_FORMATS: dict[str, tuple[str, dict[str, Any]]] = {
    ".jpg": ("JPEG", {"quality": 95}), ".jpeg": ("JPEG", {"quality": 95}), ".png": ("PNG", {}),
    ".bmp": ("BMP", {}), ".tif": ("TIFF", {}), ".tiff": ("TIFF", {}), ".webp": ("WEBP", {"quality": 95}),
}


def output_names(paths: Sequence[Path]) -> list[str]:
    """A unique output name per input path: its stem, suffixed ``_2``, ``_3``... when stems repeat (in order).

    Stems are compared ignoring case (``Dog.jpg`` and ``dog.png`` give ``Dog``, ``dog_2``): on a case-insensitive
    file system (macOS, Windows) the second would otherwise overwrite the first's outputs."""
    taken: set[str] = set()
    names = []
    for path in paths:
        name, n = path.stem, 1
        while name.casefold() in taken:
            n += 1
            name = f"{path.stem}_{n}"
        taken.add(name.casefold())
        names.append(name)
    return names


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as JSON (UTF-8, one space indent) atomically.

    A file name that is not UTF-8 (``caf\\xe9.jpg``, held by Python as the lone surrogate ``\\udce9``) is written as
    the JSON escape ``\\udce9``: valid JSON, and ``os.fsencode`` of the string read back gives the original bytes.
    """
    text = json.dumps(data, indent=1, ensure_ascii=False)
    # only lone surrogates fail to encode; backslashreplace writes each as \udcXX, which is its JSON escape
    write_atomic(path, text.encode("utf-8", errors="backslashreplace") + b"\n")


def annotated_image_path(output_dir: Path, name: str, source: Path) -> Path:
    """Where the annotated copy of ``source`` goes: same suffix when Pillow can write it, else ``.png``."""
    suffix = source.suffix.lower()
    return output_dir / f"{name}{suffix if suffix in _SAVE_FORMATS else '.png'}"


def label_file_path(output_dir: Path, name: str) -> Path:
    return output_dir / "labels" / f"{name}.txt"


def _encode(image: Image.Image, path: Path) -> bytes:
    fmt, options = _SAVE_FORMATS.get(path.suffix, ("PNG", {}))
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


class OutputWriter:
    """Writes each image's annotated copy, label file and crops in the background; collects failures.

    ``submit`` returns at once; ``close`` waits for every pending write and returns the error messages (each names
    the file).  The annotated image is drawn on the source decoded again with the detection run's ``decoder``, so
    its pixels are the ones the network saw before resizing.
    """

    def __init__(self, output_dir: Path, num_classes: int, thresh: float, save_images: bool = True,
                 save_labels: bool = False, decoder: Decoder = "auto", max_pixels: int = DEFAULT_MAX_PIXELS,
                 threads: int = 2, save_crops: bool = False) -> None:
        self.output_dir, self.num_classes, self.thresh = output_dir, num_classes, thresh
        self.save_images, self.save_labels, self.save_crops = save_images, save_labels, save_crops
        self.decoder, self.max_pixels = decoder, max_pixels
        self._pool = ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="detect-writer")
        self._pending: list[Future] = []
        self.errors: list[str] = []

    def submit(self, source: Path, name: str, detections: Sequence[Detection]) -> None:
        """Queue the files of one successfully detected image."""
        if self.save_labels:
            self._pending.append(self._pool.submit(self._write_labels, name, list(detections)))
        if self.save_images or self.save_crops:
            self._pending.append(self._pool.submit(self._write_pictures, source, name, list(detections)))

    def _write_labels(self, name: str, detections: list[Detection]) -> None:
        path = label_file_path(self.output_dir, name)
        lines = label_lines(detections, self.thresh)
        self._guarded(path, lambda: write_atomic(path, "".join(f"{line}\n" for line in lines).encode()))

    def _write_pictures(self, source: Path, name: str, detections: list[Detection]) -> None:
        """The annotated image and/or the crops, from one decoding of the source."""
        path = annotated_image_path(self.output_dir, name, source)
        pixels = self._guarded(path, lambda: load_pixels(source, self.max_pixels, self.decoder))
        if self.save_images:
            drawn = pixels.copy()  # drawn on in place; the crops come from the clean pixels
            draw_detections_on_array(drawn, detections, self.num_classes, self.thresh)
            self._guarded(path, lambda: write_atomic(path, _encode(Image.fromarray(drawn, "RGB"), path)))
        if self.save_crops:
            for relative, crop in crops(Image.fromarray(pixels, "RGB"), detections, self.thresh, name, path.suffix):
                crop_path = self.output_dir / relative
                self._guarded(crop_path, lambda: write_atomic(crop_path, _encode(crop, crop_path)))

    def _guarded(self, path: Path, work):
        try:
            return work()
        except (OSError, DarknetError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise _WriteFailed(f"{path}: cannot write: {reason}") from None

    def close(self) -> list[str]:
        """Wait for all queued writes; returns (and keeps in ``errors``) one message per failed file."""
        for future in self._pending:
            exc = future.exception()
            if exc is not None:
                if not isinstance(exc, _WriteFailed):
                    raise exc
                self.errors.append(str(exc))
        self._pending.clear()
        self._pool.shutdown(wait=True)
        return self.errors


class _WriteFailed(Exception):
    """A per-file write failure, carried from a writer thread to :meth:`OutputWriter.close`."""
