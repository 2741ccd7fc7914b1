"""Image decoding and Darknet-exact resize/letterbox, against a naive oracle and Darknet's own input tensors."""
from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from darknet_torch.data.images import (
    decode_image_bytes,
    letterbox_geometry,
    letterbox_image,
    load_image,
    max_file_bytes,
    preprocess,
    preprocess_u8,
    resize_image,
    resize_u8,
    stb_available,
    u8_hwc_to_unit_chw,
)
from darknet_torch.errors import DataError

NET = 416
# PIL (libjpeg) vs stb_image decoding differ by at most 3 levels per pixel (golden README 6.1); a bilinear
# resize is a convex combination, so the difference cannot grow. Measured over the 4 photos x 2 modes:
# max 2.92 levels, mean 0.027..0.130 levels.
PIL_MAX_ABS = 3.0 / 255 + 1e-6
PIL_MEAN_ABS = 0.15 / 255


def naive_darknet_resize(im: np.ndarray, w: int, h: int) -> np.ndarray:
    """Per-pixel float32 transcription of image.c resize_image, written from the spec (oracle only)."""
    c_n, in_h, in_w = im.shape
    f = np.float32
    w_scale = f(in_w - 1) / f(w - 1) if w > 1 else f(0)
    h_scale = f(in_h - 1) / f(h - 1) if h > 1 else f(0)
    part = np.zeros((c_n, in_h, w), np.float32)
    for k in range(c_n):
        for r in range(in_h):
            for c in range(w):
                if c == w - 1 or in_w == 1:
                    val = im[k, r, in_w - 1]
                else:
                    sx = f(c) * w_scale
                    ix = int(sx)
                    dx = sx - f(ix)
                    val = (f(1) - dx) * im[k, r, ix] + dx * im[k, r, ix + 1]
                part[k, r, c] = val
    out = np.zeros((c_n, h, w), np.float32)
    for k in range(c_n):
        for r in range(h):
            sy = f(r) * h_scale
            iy = int(sy)
            dy = sy - f(iy)
            for c in range(w):
                out[k, r, c] = (f(1) - dy) * part[k, iy, c]
            if r == h - 1 or in_h == 1:
                continue
            for c in range(w):
                out[k, r, c] = out[k, r, c] + dy * part[k, iy + 1, c]
    return out


# ----------------------------------------------------------------------------- resize vs oracle

RESIZE_CASES = [
    ((3, 7, 11), 5, 13),     # shrink width, grow height
    ((3, 13, 9), 17, 4),     # odd sizes both ways
    ((2, 1, 6), 4, 3),       # single input row
    ((1, 5, 1), 3, 8),       # single input column
    ((3, 6, 8), 1, 5),       # single output column (Darknet copies the last input column)
    ((3, 6, 8), 5, 1),       # single output row (undefined in Darknet; we sample row 0)
    ((3, 24, 31), 16, 20),   # generic downsample
    ((1, 16, 3), 3, 416),    # rounding puts the last row's sample just below row 15 (Darknet quirk)
    ((3, 9, 9), 9, 9),       # identity: Darknet returns a copy
]


@pytest.mark.parametrize(("shape", "w", "h"), RESIZE_CASES)
def test_resize_matches_naive_darknet_transcription(shape: tuple[int, int, int], w: int, h: int) -> None:
    rng = np.random.default_rng(sum(shape) * 1000 + w * 10 + h)
    im = rng.random(shape, dtype=np.float32)
    expected = torch.from_numpy(naive_darknet_resize(im, w, h))
    assert torch.equal(resize_image(torch.from_numpy(im), w, h), expected)


def test_resize_matches_naive_transcription_on_random_sizes_and_strided_input() -> None:
    # the numpy gather path (_take_columns) on many size pairs, including a non-contiguous (HWC-permuted) input
    rng = np.random.default_rng(14)
    for _ in range(24):
        in_h, in_w, h, w = (int(v) for v in rng.integers(1, 33, size=4))
        hwc = rng.random((in_h, in_w, 3), dtype=np.float32)
        expected = torch.from_numpy(naive_darknet_resize(np.ascontiguousarray(hwc.transpose(2, 0, 1)), w, h))
        assert torch.equal(resize_image(torch.from_numpy(hwc).permute(2, 0, 1), w, h), expected), (in_w, in_h, w, h)


def test_resize_accepts_a_batch_dimension() -> None:
    rng = np.random.default_rng(1)
    batch = rng.random((2, 3, 10, 14), dtype=np.float32)
    out = resize_image(torch.from_numpy(batch), 9, 6)
    assert out.shape == (2, 3, 6, 9)
    for i in range(2):
        assert torch.equal(out[i], torch.from_numpy(naive_darknet_resize(batch[i], 9, 6)))


def test_resize_reproduces_darknet_last_row_quirk_by_hand() -> None:
    # 16 -> 416 rows: h_scale = float32(15/415); 415*h_scale = 14.999999 < 15, so Darknet's last row is
    # (1-dy)*row[14] with dy = 0.999999, i.e. almost black instead of a copy of the last row.
    ones = torch.ones(1, 16, 2)
    out = resize_image(ones, 2, 416)
    assert float(out[0, -1, 0]) == pytest.approx(9.5367431640625e-07)
    assert torch.allclose(out[0, :-1], torch.ones(415, 2), atol=1e-6)


def test_resize_rejects_empty_target_and_non_float32() -> None:
    with pytest.raises(ValueError):
        resize_image(torch.zeros(3, 4, 4), 0, 4)
    with pytest.raises(TypeError):
        resize_image(torch.zeros(3, 4, 4, dtype=torch.float64), 2, 2)


# ----------------------------------------------------------------------------- letterbox geometry by hand


@pytest.mark.parametrize(
    ("orig", "expected"),
    [
        ((768, 576), (416, 312, 0, 52)),   # dog.jpg
        ((773, 512), (416, 275, 0, 70)),   # eagle/horses: odd gap 141 -> integer offset 70
        ((500, 500), (416, 416, 0, 0)),    # giraffe: equal ratios take the else branch
        ((300, 600), (208, 416, 104, 0)),  # portrait
        ((417, 1000), (173, 416, 121, 0)),  # (417*416)//1000 = 173, gap 243 -> 121
    ],
)
def test_letterbox_geometry_by_hand(orig: tuple[int, int], expected: tuple[int, int, int, int]) -> None:
    info = letterbox_geometry(*orig, NET, NET)
    assert (info.new_w, info.new_h, info.dx, info.dy) == expected


def test_letterbox_info_box_offset_is_darknets_float_half_gap() -> None:
    info = letterbox_geometry(773, 512, NET, NET)
    assert info.box_offset == (0.0, 141 / 2.0 / 416)  # 70.5 pixels, not the pasted 70
    assert info.box_scale == (1.0, float(np.float32(275) / np.float32(416)))  # C's float division


def test_letterbox_pastes_exact_resize_on_half_grey_canvas() -> None:
    rng = np.random.default_rng(2)
    im = rng.random((3, 20, 30), dtype=np.float32)
    out, info = letterbox_image(torch.from_numpy(im), 16, 16)
    assert (info.new_w, info.new_h, info.dx, info.dy) == (16, 10, 0, 3)
    assert torch.equal(out[:, 3:13], torch.from_numpy(naive_darknet_resize(im, 16, 10)))
    assert bool((out[:, :3] == 0.5).all()) and bool((out[:, 13:] == 0.5).all())


def test_preprocess_resize_mode_is_a_plain_stretch() -> None:
    im = torch.rand(3, 12, 7)
    out, info = preprocess(im, 8, 8, letterbox=False)
    assert torch.equal(out, resize_image(im, 8, 8))
    assert (info.new_w, info.new_h, info.dx, info.dy) == (8, 8, 0, 0)
    assert info.box_offset == (0.0, 0.0) and info.box_scale == (1.0, 1.0)


# ----------------------------------------------------------------------------- uint8 path (resize_u8)

# (height, width) of input images: odd, 1-pixel wide/high, shrink, grow, extreme aspect, the 640x480 frame.
U8_SHAPES = [(480, 640), (1, 1), (1, 9), (9, 1), (2, 2), (3, 5), (13, 9), (416, 416), (240, 320), (415, 417),
             (100, 1000), (1000, 100), (5, 5000), (16, 3), (2, 416)]
# (width, height) of network inputs: square, odd, 1-pixel, wider and taller than the images.
U8_TARGETS = [(416, 416), (1, 1), (1, 9), (9, 1), (608, 352), (417, 415), (5, 13)]


@pytest.mark.parametrize("shape", U8_SHAPES)
@pytest.mark.parametrize("letterbox", [False, True])
def test_preprocess_u8_is_bit_identical_to_the_float_path(shape: tuple[int, int], letterbox: bool) -> None:
    pixels = np.random.default_rng(sum(shape)).integers(0, 256, (*shape, 3), dtype=np.uint8)
    unit = u8_hwc_to_unit_chw(pixels)
    for w, h in U8_TARGETS + [(shape[1], shape[0])]:  # ... and the image's own size (a copy)
        expected, expected_info = preprocess(unit, w, h, letterbox)
        got, info = preprocess_u8(pixels, w, h, letterbox)
        assert torch.equal(got, expected), (shape, w, h, letterbox)
        assert info == expected_info and got.is_contiguous()


def test_resize_u8_matches_the_naive_transcription_on_every_level_and_a_strided_frame() -> None:
    """Every 8-bit value, read from a non-contiguous frame (a crop of a bigger one); the last-row quirk case."""
    big = (np.arange(40 * 50 * 3) * 7 % 256).astype(np.uint8).reshape(40, 50, 3)
    pixels = big[3:37, 5:45]
    unit = pixels.transpose(2, 0, 1).astype(np.float32) / np.float32(255)
    assert torch.equal(resize_u8(pixels, 23, 29), torch.from_numpy(naive_darknet_resize(unit, 23, 29)))
    column = np.random.default_rng(3).integers(0, 256, (16, 3, 3), dtype=np.uint8)
    assert torch.equal(resize_u8(column, 3, 416), resize_image(u8_hwc_to_unit_chw(column), 3, 416))


def test_resize_u8_gives_every_thread_its_own_work_arrays() -> None:
    """The reused work arrays are per thread: frames resized at once in several threads do not mix."""
    frames = [np.random.default_rng(i).integers(0, 256, (48, 64, 3), dtype=np.uint8) for i in range(4)]
    expected = [resize_image(u8_hwc_to_unit_chw(f), 41, 37) for f in frames]
    with ThreadPoolExecutor(4) as pool:
        for _ in range(20):
            assert all(torch.equal(a, b) for a, b in zip(pool.map(lambda f: resize_u8(f, 41, 37), frames), expected))


def test_resize_u8_rejects_what_is_not_a_uint8_rgb_image() -> None:
    with pytest.raises(TypeError, match="uint8"):
        resize_u8(np.zeros((4, 4, 3), np.float32), 2, 2)
    with pytest.raises(TypeError, match="uint8"):
        resize_u8(np.zeros((4, 4, 4), np.uint8), 2, 2)
    with pytest.raises(ValueError, match="at least 1x1"):
        resize_u8(np.zeros((4, 4, 3), np.uint8), 0, 2)


# ----------------------------------------------------------------------------- decoding


def _png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "PNG")
    return buf.getvalue()


def test_load_image_is_uint8_over_255_in_chw(tmp_path: Path) -> None:
    """Every 8-bit value, at many positions (vectorised bodies and tails), is Darknet's double ``u8 / 255.``."""
    pixels = (np.arange(37 * 41 * 3) * 7 % 256).astype(np.uint8).reshape(37, 41, 3)
    assert len(np.unique(pixels)) == 256
    path = tmp_path / "px.png"
    path.write_bytes(_png_bytes(pixels))
    img = load_image(path)
    assert img.dtype == torch.float32 and img.shape == (3, 37, 41) and img.is_contiguous()
    expected = (pixels.astype(np.float64) / 255.0).astype(np.float32).transpose(2, 0, 1)
    assert torch.equal(img, torch.from_numpy(np.ascontiguousarray(expected)))


def test_grey_rgba_palette_and_16bit_become_rgb_like_stb() -> None:
    grey = np.array([[0, 128], [255, 7]], np.uint8)
    assert torch.equal(decode_image_bytes(_png_bytes(grey)), decode_image_bytes(_png_bytes(np.stack([grey] * 3, -1))))
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 0  # fully transparent red: stb drops alpha without compositing
    assert torch.equal(decode_image_bytes(_png_bytes(rgba))[0], torch.full((2, 2), 200 / 255.0))
    pal = Image.new("P", (2, 1))
    pal.putpalette([10, 20, 30, 40, 50, 60])
    pal.putdata([0, 1])
    buf = io.BytesIO()
    pal.save(buf, "PNG")
    decoded = decode_image_bytes(buf.getvalue())
    assert torch.equal(decoded[:, 0, 1], torch.tensor([40, 50, 60]) / torch.tensor(255.0))
    grey16 = np.array([[0x12FF, 0xABCD]], np.uint16)  # stb keeps the high byte: 0x12, 0xAB
    decoded16 = decode_image_bytes(_png_bytes(grey16))  # Pillow saves uint16 as 16-bit PNG
    assert torch.equal(decoded16[:, 0, 1], torch.full((3,), 0xAB / 255.0))


def test_exif_orientation_is_ignored_like_stb() -> None:
    pixels = np.zeros((2, 3, 3), np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW": a viewer would show 2 wide x 3 high
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG", exif=exif)
    assert decode_image_bytes(buf.getvalue()).shape == (3, 2, 3)


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def _jpeg_bytes() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


BAD_FILES = {
    "empty.jpg": (b"", "empty"),
    "text.jpg": (b"this is a text file, not a JPEG\n", "not a recognised image"),
    "truncated.jpg": (_jpeg_bytes()[:400], "truncated"),
    "huge.png": (_png_header_only(100_000, 100_000), "too large"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_image_files_raise_data_error_naming_the_path(tmp_path: Path, name: str) -> None:
    data, reason = BAD_FILES[name]
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(DataError, match=reason) as err:
        load_image(path)
    assert str(path) in str(err.value)


def test_max_pixels_is_checked_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "small.png"
    path.write_bytes(_png_bytes(np.zeros((10, 20, 3), np.uint8)))
    assert load_image(path, max_pixels=200).shape == (3, 10, 20)
    with pytest.raises(DataError, match=r"20x10 = 200 pixels, more than max_pixels=199") as err:
        load_image(path, max_pixels=199)
    assert str(path) in str(err.value)


def test_an_image_under_max_pixels_decodes_without_pillows_bomb_warning(tmp_path: Path) -> None:
    # Pillow warns from half its limit (89M pixels, e.g. a 92 KB 10000x9500 PNG) with its own file:line, twice per
    # image in detect; max_pixels is the guard, so that warning is noise. A subprocess sees the filters as the CLI.
    path = tmp_path / "small.png"
    path.write_bytes(_png_bytes(np.zeros((10, 20, 3), np.uint8)))
    code = ("import sys; from PIL import Image; Image.MAX_IMAGE_PIXELS = 150\n"
            "from darknet_torch.data.images import load_image\n"
            "print(tuple(load_image(sys.argv[1], decoder='pil').shape))")
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, cwd=root,
                          env={**os.environ, "PYTHONPATH": str(root)}, check=True)
    assert done.stdout.strip() == "(3, 10, 20)"
    assert "DecompressionBombWarning" not in done.stderr and "warn" not in done.stderr


def test_a_file_too_big_for_max_pixels_is_refused_before_it_is_read(tmp_path: Path) -> None:
    # a 5 GB video named .jpg was read into memory whole before "not a recognised image format"
    path = tmp_path / "video.jpg"
    with path.open("wb") as file:
        file.truncate(max_file_bytes(100) + 1)  # sparse: no disk used
    with pytest.raises(DataError, match=rf"{path}: file of {max_file_bytes(100) + 1} bytes is larger than any "
                                        r"image of max_pixels=100 pixels can be .* refused before reading it"):
        load_image(path, max_pixels=100)
    small = tmp_path / "small.png"
    small.write_bytes(_png_bytes(np.zeros((10, 10, 3), np.uint8)))
    assert load_image(small, max_pixels=100).shape == (3, 10, 10)


def test_missing_path_and_directory_raise_data_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jpg"
    with pytest.raises(DataError, match="not found") as err:
        load_image(missing)
    assert str(missing) in str(err.value)
    with pytest.raises(DataError) as err:
        load_image(tmp_path)
    assert str(tmp_path) in str(err.value)


def test_decode_image_bytes_names_its_source() -> None:
    with pytest.raises(DataError, match="upload#3"):
        decode_image_bytes(b"nope", source="upload#3")
    with pytest.raises(ValueError, match="decoder"):
        decode_image_bytes(_jpeg_bytes(), decoder="opencv")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- against Darknet's inputs


def _golden_cases() -> list[tuple[str, str]]:
    return [(photo, mode) for photo in ("dog", "eagle", "giraffe", "horses") for mode in ("resize", "letterbox")]


def _golden_input(golden_dir: Path, shared_dir: Path, photo: str, mode: str) -> tuple[torch.Tensor, Path]:
    folder = golden_dir / "real" / f"{photo}_{mode}"
    image_path = shared_dir / "images" / f"{photo}.jpg"
    if not (folder / "input.f32").exists() or not image_path.exists():
        pytest.skip(f"golden input or photo missing under {folder} / {image_path}")
    golden = torch.from_numpy(np.fromfile(folder / "input.f32", "<f4").reshape(3, NET, NET))
    return golden, image_path


@pytest.mark.parametrize(("photo", "mode"), _golden_cases())
def test_pil_preprocessing_matches_darknet_input(
    golden_dir: Path, shared_dir: Path, photo: str, mode: str
) -> None:
    golden, image_path = _golden_input(golden_dir, shared_dir, photo, mode)
    ours, info = preprocess(load_image(image_path), NET, NET, letterbox=mode == "letterbox")

    # Geometry: Darknet's padding is exactly 0.5 everywhere outside the pasted area, and ours is the same
    # region; the pasted area's border rows/columns are image content in both.
    pasted = torch.zeros(NET, NET, dtype=torch.bool)
    pasted[info.dy : info.dy + info.new_h, info.dx : info.dx + info.new_w] = True
    assert bool((golden[:, ~pasted] == 0.5).all()) and bool((ours[:, ~pasted] == 0.5).all())
    for edge in (golden[:, info.dy], golden[:, info.dy + info.new_h - 1], golden[:, :, info.dx]):
        assert not bool((edge == 0.5).all())

    diff = (ours - golden).abs()
    assert float(diff.max()) <= PIL_MAX_ABS
    assert float(diff.mean()) < PIL_MEAN_ABS


@pytest.mark.skipif(not stb_available(), reason="optional package libstb (stb_image) not installed: pip install libstb")
@pytest.mark.parametrize(("photo", "mode"), _golden_cases())
def test_stb_decoder_reproduces_darknet_input_bit_exactly(
    golden_dir: Path, shared_dir: Path, photo: str, mode: str
) -> None:
    golden, image_path = _golden_input(golden_dir, shared_dir, photo, mode)
    ours, _ = preprocess(load_image(image_path, decoder="stb"), NET, NET, letterbox=mode == "letterbox")
    assert torch.equal(ours, golden)


def _lossless_samples() -> dict[str, bytes]:
    rng = np.random.default_rng(4)
    samples = {
        "grey8.png": _png_bytes(rng.integers(0, 256, (5, 7), dtype=np.uint8)),
        "grey16.png": _png_bytes(rng.integers(0, 65536, (5, 7), dtype=np.uint16)),
        "rgba.png": _png_bytes(rng.integers(0, 256, (5, 7, 4), dtype=np.uint8)),
    }
    for fmt in ("BMP", "GIF"):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)).save(buf, fmt)
        samples[f"rgb.{fmt.lower()}"] = buf.getvalue()
    return samples


@pytest.mark.skipif(not stb_available(), reason="optional package libstb (stb_image) not installed: pip install libstb")
@pytest.mark.parametrize("name", sorted(_lossless_samples()))
def test_pil_mode_conversion_agrees_with_stb_on_lossless_files(name: str) -> None:
    data = _lossless_samples()[name]
    assert torch.equal(decode_image_bytes(data), decode_image_bytes(data, decoder="stb"))


@pytest.mark.skipif(not stb_available(), reason="optional package libstb (stb_image) not installed: pip install libstb")
def test_stb_decoder_errors_name_the_source(tmp_path: Path) -> None:
    path = tmp_path / "text.jpg"
    path.write_bytes(b"plain text")
    with pytest.raises(DataError, match="not a recognised image") as err:
        load_image(path, decoder="stb")
    assert str(path) in str(err.value)
    big = _png_bytes(np.zeros((10, 20, 3), np.uint8))
    with pytest.raises(DataError, match="more than max_pixels=199"):
        decode_image_bytes(big, max_pixels=199, decoder="stb")


# ----------------------------------------------------------------------------- issue 17: extreme shapes, odd files


@pytest.mark.parametrize(
    ("orig", "expected"),
    [
        ((5000, 1), (416, 1, 0, 207)),     # Darknet: (1*416)//5000 = 0 rows, an empty image on grey
        ((1, 5000), (1, 416, 207, 0)),
        ((100_000, 3), (416, 1, 0, 207)),
        ((417, 1), (416, 1, 0, 207)),      # (1*416)//417 = 0
        ((416, 1), (416, 1, 0, 207)),      # 1 row already: Darknet's own result
    ],
)
def test_letterbox_keeps_at_least_one_pixel_per_side(orig: tuple[int, int], expected: tuple[int, int, int, int]) -> None:
    info = letterbox_geometry(*orig, NET, NET)
    assert (info.new_w, info.new_h, info.dx, info.dy) == expected
    assert min(info.box_scale) > 0  # boxes map back finitely (Darknet divides by new_h = 0 here)


def test_a_5000x1_image_letterboxes_to_its_resized_row_on_grey() -> None:
    image = torch.from_numpy(np.random.default_rng(5).random((3, 1, 5000), dtype=np.float32))
    canvas, info = letterbox_image(image, NET, NET)
    assert canvas.shape == (3, NET, NET) and (info.new_h, info.dy) == (1, 207)
    assert torch.equal(canvas[:, 207:208], resize_image(image, NET, 1))
    assert bool((canvas[:, :207] == 0.5).all()) and bool((canvas[:, 208:] == 0.5).all())


def _encoded(fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(6).integers(0, 256, (12, 17, 3), dtype=np.uint8)).save(buffer, fmt)
    return buffer.getvalue()


@pytest.mark.skipif(not stb_available(), reason="optional package libstb (stb_image) not installed: pip install libstb")
@pytest.mark.parametrize("fmt", ["WEBP", "TIFF"])
def test_formats_stb_cannot_read_are_decoded_by_pillow(fmt: str) -> None:
    data = _encoded(fmt)
    decoded = decode_image_bytes(data, decoder="stb")
    assert decoded.shape == (3, 12, 17) and torch.equal(decoded, decode_image_bytes(data, decoder="pil"))


@pytest.mark.skipif(not stb_available(), reason="optional package libstb (stb_image) not installed: pip install libstb")
def test_a_truncated_jpeg_decoded_by_stb_is_a_warning_naming_the_file(tmp_path: Path) -> None:
    complete = _encoded("JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(complete[: len(complete) * 2 // 3])
    warnings: list[str] = []
    image = load_image(path, decoder="stb", warn=warnings.append)
    assert image.shape == (3, 12, 17)  # decoded as Darknet does, the missing part grey
    assert warnings == [f"{path}: truncated JPEG (no end-of-image marker): decoded as Darknet does, the missing part "
                        "grey (the pil decoder refuses such files)"]
    for fine in (complete, complete + b"\0" * 64, complete + b"trailing data after the end marker"):
        decode_image_bytes(fine, decoder="stb", warn=warnings.append)
    assert len(warnings) == 1
