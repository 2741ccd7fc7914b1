"""Image loading and Darknet's exact input pre-processing (stretch resize and letterbox).

Conventions: images are float32 tensors ``[..., C, H, W]`` (RGB, values in [0, 1]), as Darknet's
``image`` struct stores them (planar, ``uint8 / 255.``). ``resize_image`` and ``letterbox_image`` are
bit-exact transcriptions of Darknet's float32 arithmetic, so a network fed by them sees the same
input as C Darknet does, given the same decoded pixels.  Images still in their decoded uint8 ``[H, W, 3]``
(video frames, ``load_pixels``) go through ``preprocess_u8`` instead: the same input, for less CPU time.

Decoding: Darknet (built without OpenCV) decodes with stb_image. Pillow decodes JPEGs with libjpeg,
whose IDCT/upsampling differ from stb_image by a few levels on some pixels; the optional
``decoder="stb"`` (the ``libstb`` package, which vendors stb_image) removes that difference.
EXIF orientation is ignored, as stb_image ignores it: boxes then refer to the stored pixel grid.
"""
from __future__ import annotations

import functools
import io
import os
import struct
import threading
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import torch
from PIL import Image

from darknet_torch.errors import DarknetError, DataError

#: Default decompression-bomb limit: Pillow's own default, without touching Pillow's global.
DEFAULT_MAX_PIXELS = 178_956_970
# Pillow warns (with its own file:line) at half its limit; the max_pixels check refuses bombs before decoding,
# so an image allowed by it decodes without that noise. Only this one category is filtered.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

Decoder = Literal["pil", "stb", "auto"]  # auto: stb when libstb is installed, else pil
#: Receives a warning about an image that decoded but not as it should (e.g. a truncated JPEG stb grey-filled).
Warn = Callable[[str], None]

# Exceptions Pillow raises for corrupt, truncated or unsupported data (it has no single base class).
_PIL_DECODE_ERRORS = (
    OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, KeyError,
    struct.error, zlib.error,
)


@dataclass(frozen=True)
class LetterboxInfo:
    """Geometry of one pre-processing step, needed later to map boxes back to the original image.

    ``new_w``/``new_h`` is the size the image was resized to, pasted at integer offset
    ``(dx, dy)`` on a ``net_w`` x ``net_h`` canvas. For a plain (stretch) resize,
    ``new_w == net_w``, ``new_h == net_h`` and the offsets are 0.
    """

    orig_w: int
    orig_h: int
    net_w: int
    net_h: int
    new_w: int
    new_h: int
    dx: int
    dy: int

    @property
    def box_offset(self) -> tuple[float, float]:
        """Darknet's correct_yolo_boxes offset ``((net_w-new_w)/2./net_w, (net_h-new_h)/2./net_h)``.

        It is the *float* half-gap, although the image was pasted at the integer offset (dx, dy):
        when the gap is odd, Darknet's boxes are shifted by half a network pixel, and so are ours.
        """
        return ((self.net_w - self.new_w) / 2.0 / self.net_w, (self.net_h - self.new_h) / 2.0 / self.net_h)

    @property
    def box_scale(self) -> tuple[float, float]:
        """Darknet's correct_yolo_boxes scale ``(new_w/net_w, new_h/net_h)``, a float32 division as in C
        (``ratiow = (float)new_w / netw``), held as a Python float."""
        return (float(np.float32(self.new_w) / np.float32(self.net_w)),
                float(np.float32(self.new_h) / np.float32(self.net_h)))


# --------------------------------------------------------------------------- decoding


def load_image(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS, decoder: Decoder = "pil",
               warn: Warn | None = None) -> torch.Tensor:
    """Decode an image file to float32 ``[3, H, W]`` RGB in [0, 1] (Darknet's ``load_image(path,0,0,3)``): the
    :func:`load_pixels` as Darknet stores them."""
    return u8_hwc_to_unit_chw(load_pixels(path, max_pixels, decoder, warn))


def load_pixels(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS, decoder: Decoder = "pil",
                warn: Warn | None = None) -> np.ndarray:
    """Decode an image file to uint8 ``[H, W, 3]`` RGB (for :func:`preprocess_u8`; :func:`load_image` is its float).

    Raises DataError naming the path for a missing/unreadable/empty file, data that is not a
    supported image, a truncated or corrupt image, or one with more than ``max_pixels`` pixels
    (checked from the header, before any pixel memory is allocated; Pillow's own global limit still
    applies on top with ``decoder="pil"``).

    ``decoder="pil"`` (default) differs from Darknet by up to 3 levels on some JPEG pixels;
    ``decoder="stb"`` needs the optional ``libstb`` package and reproduces Darknet's pixels exactly,
    including its tolerance of truncated JPEGs (stb_image fills the missing part with grey instead of failing;
    ``warn`` is then called with a message naming the path).  Formats stb_image cannot read (WebP, TIFF) are
    decoded by Pillow.
    """
    path = Path(path)
    try:
        with path.open("rb") as file:
            size = os.fstat(file.fileno()).st_size
            if size > max_file_bytes(max_pixels):
                raise DataError(f"{path}: file of {size} bytes is larger than any image of max_pixels={max_pixels} "
                                f"pixels can be ({max_file_bytes(max_pixels)} bytes); refused before reading it")
            data = file.read()
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read image file: {exc.strerror or exc}") from None
    return decode_pixels(data, max_pixels=max_pixels, decoder=decoder, source=str(path), warn=warn)


def max_file_bytes(max_pixels: int) -> int:
    """The largest image file read for ``max_pixels``: 8 bytes a pixel (uncompressed 16-bit RGBA, the largest
    sample layout of the formats read) plus 64 MB for headers and metadata. A bigger file (a video or disk image
    named ``.jpg``) is refused before it is read into memory. Only a pathological file can be larger for its pixels:
    plain-text PPM (P3, which stb_image does not read) with 16-bit samples over ~8 million pixels."""
    return 8 * max_pixels + 2**26


def decode_image_bytes(
    data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, decoder: Decoder = "pil", source: str = "<bytes>",
    warn: Warn | None = None,
) -> torch.Tensor:
    """Decode encoded image bytes exactly as ``load_image`` does; ``source`` names them in errors and warnings."""
    return u8_hwc_to_unit_chw(decode_pixels(data, max_pixels, decoder, source, warn))


def decode_pixels(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, decoder: Decoder = "pil",
                  source: str = "<bytes>", warn: Warn | None = None) -> np.ndarray:
    """Decode encoded image bytes exactly as ``load_pixels`` does, to uint8 ``[H, W, 3]``."""
    if not data:
        raise DataError(f"{source}: empty file (0 bytes), not an image")
    if decoder == "auto":
        decoder = "stb" if stb_available() else "pil"
    if decoder == "pil":
        pixels = _decode_pil(data, max_pixels, source)
    elif decoder == "stb":
        pixels = _decode_stb(data, max_pixels, source)
        if warn is not None and _truncated_jpeg(data):
            warn(f"{source}: truncated JPEG (no end-of-image marker): decoded as Darknet does, the missing part "
                 "grey (the pil decoder refuses such files)")
    else:
        raise ValueError(f"unknown decoder {decoder!r}: expected 'pil', 'stb' or 'auto'")
    return pixels


def stb_available() -> bool:
    """True when the optional ``libstb`` package (stb_image, Darknet's decoder) is importable."""
    try:
        import libstb  # noqa: F401
    except ImportError:
        return False
    return True


def _check_size(width: int, height: int, max_pixels: int, source: str) -> None:
    if width <= 0 or height <= 0:
        raise DataError(f"{source}: image header gives an empty size {width}x{height}")
    if width * height > max_pixels:
        raise DataError(
            f"{source}: image is {width}x{height} = {width * height} pixels, more than max_pixels={max_pixels} "
            "(refused before decoding, as a decompression-bomb guard)"
        )


def _decode_pil(data: bytes, max_pixels: int, source: str) -> np.ndarray:
    """Pillow decode to uint8 ``[H, W, 3]``, converting modes the way stb_image's 3-channel load does."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            _check_size(im.width, im.height, max_pixels, source)
            im.load()
            return _pil_to_rgb_u8(im, source)
    except DataError:
        raise
    except Image.UnidentifiedImageError:
        raise DataError(f"{source}: not a recognised image format ({len(data)} bytes)") from None
    except Image.DecompressionBombError as exc:
        raise DataError(f"{source}: image too large, refused before decoding: {exc}") from None
    except _PIL_DECODE_ERRORS as exc:
        raise DataError(f"{source}: corrupt or truncated image: {exc}") from None


def _pil_to_rgb_u8(im: Image.Image, source: str) -> np.ndarray:
    # stb_image reduces 16-bit samples to 8 bits by keeping the high byte; Pillow's convert("RGB")
    # would clip 16-bit greyscale at 255 instead. 16-bit RGB PNGs already decode to their high bytes.
    if im.mode.startswith("I;16"):
        grey = (np.asarray(im).astype(np.uint16) >> 8).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if im.mode in ("I", "F"):
        raise DataError(f"{source}: unsupported {im.mode!r} (32-bit) pixel mode; Darknet reads 8-bit images")
    # L/LA -> grey replicated, RGBA/LA -> alpha dropped (not composited), P -> palette colours:
    # the same as stb_image asked for 3 channels.
    return np.asarray(im.convert("RGB"), dtype=np.uint8)


def _decode_stb(data: bytes, max_pixels: int, source: str) -> np.ndarray:
    """stb_image decode (Darknet's own decoder) via the optional ``libstb`` package."""
    try:
        import libstb
    except ImportError:
        raise DarknetError("decoder='stb' needs the optional package libstb (pip install libstb)") from None
    try:
        info = libstb.ImageInfo.read(data)
    except libstb.Error:
        return _decode_pil(data, max_pixels, source)  # not a format stb_image reads (WebP, TIFF, ...): Pillow's
    _check_size(info.width, info.height, max_pixels, source)
    try:
        image = libstb.Image.open(data, channels=3, max_bytes=max(1, max_pixels) * 3)
    except (libstb.Error, ValueError) as exc:
        raise DataError(f"{source}: corrupt or truncated image: {exc}") from None
    return image.numpy(copy=True)


def _truncated_jpeg(data: bytes) -> bool:
    """True for a JPEG cut short: no end-of-image marker at its end, confirmed by Pillow's strict decoder (so a
    complete file followed by padding or other data is not reported)."""
    if not data.startswith(b"\xff\xd8") or data.rstrip(b"\0\r\n ").endswith(b"\xff\xd9"):
        return False
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
    except (*_PIL_DECODE_ERRORS, Image.DecompressionBombError):
        return True
    return False


def u8_hwc_to_unit_chw(pixels: np.ndarray) -> torch.Tensor:
    """uint8 ``[H, W, 3]`` -> float32 ``[3, H, W]`` holding Darknet's ``u8 / 255.``.

    Darknet divides in double and rounds to float; float32 division is correctly rounded and gives the same 256
    values (tests/data/test_images.py checks every one), twice as fast as a lookup table.  The planar copy is made
    in uint8 first: converting a contiguous array is faster than converting while permuting (1.2 vs 1.8 ms at 640x480).
    """
    planar = np.array(pixels.transpose(2, 0, 1), order="C")  # always a new, writable copy (Pillow's are read-only)
    return torch.from_numpy(planar).to(torch.float32).div_(255.0)


# --------------------------------------------------------------------------- geometry


def _axis_taps(n_in: int, n_out: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Darknet's per-output sample position along one axis: integer tap ``i`` and float32 fraction ``d``.

    ``scale = (float)(n_in-1)/(n_out-1)``, ``s = (float)k * scale``, ``i = (int)s``, ``d = s - i``, all float32.
    For ``n_out == 1`` Darknet divides by zero (undefined for rows); we use scale 0 there.
    """
    if n_out == 1:
        scale = np.float32(0.0)
    else:
        scale = np.float32(n_in - 1) / np.float32(n_out - 1)
    pos = torch.arange(n_out, dtype=torch.float32) * torch.tensor(scale, dtype=torch.float32)
    tap = pos.to(torch.int64)  # truncation == floor, positions are >= 0
    frac = pos - tap.to(torch.float32)
    return tap, frac


def resize_image(img: torch.Tensor, w: int, h: int) -> torch.Tensor:
    """Bilinear resize of ``[..., C, H, W]`` float32 to ``[..., C, h, w]``, bit-exact to Darknet's resize_image.

    Matches image.c ``resize_image``: align-corners scale ``(in-1)/(out-1)``, a horizontal pass then a
    vertical pass, each ``(1-d)*a + d*b`` in float32 with every product rounded. The last output column
    copies the last input column; the last output row keeps only ``(1-dy)*row[iy]`` (so when float
    rounding puts its sample just below the last input row, Darknet darkens it, and so do we).
    Same size returns a copy, as Darknet does.
    """
    if w < 1 or h < 1:
        raise ValueError(f"resize target must be at least 1x1, got {w}x{h}")
    if img.dtype != torch.float32:
        raise TypeError(f"resize_image expects float32 (Darknet's arithmetic), got {img.dtype}")
    in_h, in_w = img.shape[-2], img.shape[-1]
    if (in_w, in_h) == (w, h):
        return img.clone()

    # In-place arithmetic on the freshly gathered taps: the same separately rounded products and sums, fewer passes.
    # Horizontal pass: [..., H, W] -> [..., H, w].
    ix, dx = _axis_taps(in_w, w)
    part = _take_columns(img, ix).mul_(1 - dx).add_(_take_columns(img, (ix + 1).clamp_max(in_w - 1)).mul_(dx))
    part[..., w - 1 if in_w > 1 else 0:] = img[..., in_w - 1 : in_w]  # copied columns

    # Vertical pass: [..., H, w] -> [..., h, w]; two separately rounded steps as in Darknet's add_pixel.
    iy, dy = _axis_taps(in_h, h)
    dy_col = dy[:, None]
    out = part.index_select(-2, iy).mul_(1 - dy_col)
    if in_h > 1 and h > 1:
        out[..., :-1, :].add_(part.index_select(-2, iy[:-1] + 1).mul_(dy_col[:-1]))
    return out


def _take_columns(img: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``img[..., index]`` as a new tensor.  On the CPU numpy's ``take`` gathers along the last axis about 3.5x faster
    than torch's indexing (0.7 vs 2.6 ms for a 640x480 frame's 416 columns), the bulk of a video frame's resize;
    ``mode="wrap"`` (the indices are valid: the same gather) skips the bounds checks, 20 % faster."""
    if img.device.type != "cpu" or img.requires_grad:
        return img[..., index]
    return torch.from_numpy(np.take(img.numpy(), index.numpy(), axis=-1, mode="wrap"))


@dataclass(frozen=True)
class _U8Taps:
    """Where :func:`resize_u8` samples, for one input and output size (cached: a video's frames share it)."""

    rows: np.ndarray  # input rows the vertical pass reads, ascending (others are never converted)
    cols: np.ndarray  # input column of each output column's left tap, then of its right tap
    col_weights: torch.Tensor  # [2, 1, 1, w]: 1-dx then dx; a copied column is 0 * left + 1 * right (exact)
    top: torch.Tensor  # [h] row (into ``rows``) of each output row's upper tap
    below: torch.Tensor  # [h-1] row of its lower tap (empty when Darknet adds none: one input or output row)
    top_weights: torch.Tensor  # [h, 1] 1-dy
    below_weights: torch.Tensor  # [h-1, 1] dy


@functools.lru_cache(maxsize=32)
def _u8_taps(in_w: int, in_h: int, w: int, h: int) -> _U8Taps:
    ix, dx = _axis_taps(in_w, w)
    copied = (torch.arange(w) == w - 1) | (in_w == 1)  # Darknet copies the last column (every one if in_w == 1)
    left = torch.where(copied, max(in_w - 2, 0), ix)
    right = (left + 1).clamp_max(in_w - 1)
    col_weights = torch.stack([torch.where(copied, 0.0, 1 - dx), torch.where(copied, 1.0, dx)])
    iy, dy = _axis_taps(in_h, h)
    below = iy[:-1] + 1 if in_h > 1 and h > 1 else iy[:0]
    rows = torch.unique(torch.cat([iy, below]))
    return _U8Taps(rows.numpy(), torch.cat([left, right]).numpy(), col_weights[:, None, None, :],
                   torch.searchsorted(rows, iy), torch.searchsorted(rows, below), (1 - dy)[:, None],
                   dy[: len(below), None])


def resize_u8(pixels: np.ndarray, w: int, h: int) -> torch.Tensor:
    """``resize_image(u8_hwc_to_unit_chw(pixels), w, h)`` bit for bit from uint8 ``[H, W, 3]``, in 0.5-0.8
    of its CPU time for a 640x480 frame, 0.2-0.45 for 1920x1080 (benchmarks/README.md, Video).

    The slow steps of the float path are gathering single floats along the last axis and converting every pixel;
    here the taps are gathered as whole pixels while still uint8: each pixel read as one 4-byte word (its R, G, B
    and a neighbour's byte, an overlapping view) for the left and the right tap of every output column, only on
    the rows the vertical pass reads.  Those bytes are made planar, then only they become float (``u8 / 255``), and
    the two passes run as in :func:`resize_image`, each product rounded separately.
    """
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
        raise TypeError(f"resize_u8 expects uint8 [H, W, 3] pixels, got {pixels.dtype} {list(pixels.shape)}")
    if w < 1 or h < 1:
        raise ValueError(f"resize target must be at least 1x1, got {w}x{h}")
    in_h, in_w = pixels.shape[:2]
    if (in_w, in_h) == (w, h):
        return u8_hwc_to_unit_chw(pixels)
    taps = _u8_taps(in_w, in_h, w, h)
    n = len(taps.rows)
    padded = _scratch("padded", (n * in_w * 3 + 1,), np.uint8)  # a spare byte: the last pixel's word reads past B
    # mode="wrap": the same (valid) indices as the default "raise", which copies through a temporary when given out.
    np.take(pixels.reshape(in_h, in_w * 3), taps.rows, axis=0, out=padded[:-1].reshape(n, in_w * 3), mode="wrap")
    words = _scratch("words", (n, in_w), np.uint32)
    np.copyto(words, np.ndarray((n, in_w), np.uint32, padded, 0, (3 * in_w, 3)))
    gathered = _scratch("gathered", (n, 2 * w), np.uint32)
    np.take(words, taps.cols, axis=1, out=gathered, mode="wrap")
    planar = _scratch("planar", (2, 3, n, w), np.uint8)  # [tap, C, row, column]
    np.copyto(planar, gathered.view(np.uint8).reshape(n, 2, w, 4).transpose(1, 3, 0, 2)[:, :3])
    values = torch.from_numpy(np.divide(planar, np.float32(255), out=_scratch("values", planar.shape, np.float32),
                                        dtype=np.float32))  # Darknet's u8/255.
    part = values.mul_(taps.col_weights)[0].add_(values[1])  # horizontal pass: [3, n, w]
    out = part.index_select(1, taps.top).mul_(taps.top_weights)
    if len(taps.below):
        below = torch.from_numpy(_scratch("below", (3, h - 1, w), np.float32))
        out[:, :-1].add_(torch.index_select(part, 1, taps.below, out=below).mul_(taps.below_weights))
    return out


_SCRATCH = threading.local()


def _scratch(name: str, shape: tuple[int, ...], dtype: type) -> np.ndarray:
    """This thread's work array ``name``, kept while the shape stays the same (a video's frames): a fresh array of a
    few MB faults its pages on every call (a multiply into a new 2 MB tensor: 0.19 ms, into an existing one 0.06)."""
    array = getattr(_SCRATCH, name, None)
    if array is None or array.shape != shape:
        array = np.empty(shape, dtype)
        setattr(_SCRATCH, name, array)
    return array


def letterbox_geometry(orig_w: int, orig_h: int, net_w: int, net_h: int) -> LetterboxInfo:
    """Darknet's letterbox_image size rule: fit inside ``net_w`` x ``net_h`` keeping aspect (integer division).

    The comparison ``(float)net_w/orig_w < (float)net_h/orig_h`` is done in float32 as in C.  Extreme aspect ratios
    (e.g. 5000x1 into 416x416: ``(1*416)//5000 = 0``) keep at least one pixel per side.  Darknet does not: it resizes
    to an empty 416x0 image, feeds a plain grey canvas and divides by ``new_h = 0`` in ``correct_yolo_boxes``
    (infinite boxes); with one row the image is seen, and boxes map back finitely.  Every other size is Darknet's.
    """
    if orig_w < 1 or orig_h < 1:
        raise ValueError(f"cannot letterbox an empty {orig_w}x{orig_h} image")
    if np.float32(net_w) / np.float32(orig_w) < np.float32(net_h) / np.float32(orig_h):
        new_w, new_h = net_w, max(1, (orig_h * net_w) // orig_w)
    else:
        new_w, new_h = max(1, (orig_w * net_h) // orig_h), net_h
    return LetterboxInfo(orig_w, orig_h, net_w, net_h, new_w, new_h, (net_w - new_w) // 2, (net_h - new_h) // 2)


def letterbox_image(img: torch.Tensor, w: int, h: int) -> tuple[torch.Tensor, LetterboxInfo]:
    """Darknet's letterbox_image: resize to fit keeping aspect, paste at the integer offset on a 0.5 canvas.

    Input ``[..., C, H, W]`` float32; returns ``[..., C, h, w]`` and the geometry for undoing it.
    """
    return preprocess(img, w, h, letterbox=True)


def preprocess(img: torch.Tensor, w: int, h: int, letterbox: bool) -> tuple[torch.Tensor, LetterboxInfo]:
    """Network input for ``img`` (``[..., C, H, W]``) as Darknet's detector builds it: stretch or letterbox."""
    return _fit(lambda new_w, new_h: resize_image(img, new_w, new_h), img.shape[-1], img.shape[-2], w, h, letterbox)


def preprocess_u8(pixels: np.ndarray, w: int, h: int, letterbox: bool) -> tuple[torch.Tensor, LetterboxInfo]:
    """``preprocess(u8_hwc_to_unit_chw(pixels), w, h, letterbox)`` bit for bit, from uint8 ``[H, W, 3]`` RGB, for
    less CPU (:func:`resize_u8`): video frames and decoded images are uint8 before they are inputs."""
    return _fit(lambda new_w, new_h: resize_u8(pixels, new_w, new_h), pixels.shape[1], pixels.shape[0], w, h,
                letterbox)


@dataclass(frozen=True)
class Preprocessor:
    """:func:`preprocess` for one network size and mode, picklable for DataLoader workers: call it with a float
    image, or :meth:`pixels` with the uint8 image it was decoded from (the same input, for less CPU)."""

    w: int
    h: int
    letterbox: bool

    def __call__(self, img: torch.Tensor) -> tuple[torch.Tensor, LetterboxInfo]:
        return preprocess(img, self.w, self.h, self.letterbox)

    def pixels(self, pixels: np.ndarray) -> tuple[torch.Tensor, LetterboxInfo]:
        return preprocess_u8(pixels, self.w, self.h, self.letterbox)


def _fit(resize: Callable[[int, int], torch.Tensor], in_w: int, in_h: int, w: int, h: int,
         letterbox: bool) -> tuple[torch.Tensor, LetterboxInfo]:
    """Stretch to ``w`` x ``h``, or letterbox: ``resize`` to the fitted size, pasted on a 0.5 canvas."""
    if not letterbox:
        return resize(w, h), LetterboxInfo(in_w, in_h, w, h, w, h, 0, 0)
    info = letterbox_geometry(in_w, in_h, w, h)
    resized = resize(info.new_w, info.new_h)
    canvas = torch.full((*resized.shape[:-2], h, w), 0.5, dtype=resized.dtype)
    canvas[..., info.dy : info.dy + info.new_h, info.dx : info.dx + info.new_w] = resized
    return canvas, info


def resize_min(img: torch.Tensor, min_side: int) -> torch.Tensor:
    """Darknet's ``resize_min``: resize so the shorter side is ``min_side`` (integer arithmetic, the other side
    ``side * min_side / shorter`` rounded down); the image itself when already that size."""
    h, w = img.shape[-2], img.shape[-1]
    if w < h:
        new_w, new_h = min_side, (h * min_side) // w
    else:
        new_w, new_h = (w * min_side) // h, min_side
    return img if (new_w, new_h) == (w, h) else resize_image(img, new_w, new_h)


def crop_image(img: torch.Tensor, dx: int, dy: int, w: int, h: int) -> torch.Tensor:
    """Darknet's ``crop_image``: the ``w x h`` window at (dx, dy); pixels outside repeat the nearest edge pixel
    (``constrain_int`` on the row and column)."""
    in_h, in_w = img.shape[-2], img.shape[-1]
    rows = (torch.arange(h) + dy).clamp(0, in_h - 1)
    cols = (torch.arange(w) + dx).clamp(0, in_w - 1)
    return img[..., rows[:, None], cols[None, :]]


def center_crop_min(img: torch.Tensor, w: int, h: int) -> torch.Tensor:
    """``classifier predict``'s input: ``resize_min(im, w)`` then ``crop_image`` centred at
    ``((rw - w)/2, (rh - h)/2)`` with C's truncating division."""
    resized = resize_min(img, w)
    rh, rw = resized.shape[-2], resized.shape[-1]
    return crop_image(resized, int((rw - w) / 2), int((rh - h) / 2), w, h)
