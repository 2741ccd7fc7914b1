"""Detection augmentation: boxes stay consistent with pixels, and each step matches Darknet's rule.

Consistency tests paint filled rectangles of distinct pure colours on a black image, label them, augment, and check
that every output box encloses exactly the pixels of its colour (within 2 pixels) and that colours without a box are
(almost) gone. Exact rules are checked against hand-computed cases and naive references written from the C code.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from darknet_torch.config.cfg_parser import parse_cfg_text
from darknet_torch.config.sections import type_sections
from darknet_torch.data.augment import (AugmentConfig, AugmentDraw, _effective_blur, apply_augmentation, augment,
                                        draw_augmentation, draw_source_count)
from darknet_torch.data.augment_color import (add_gaussian_noise, blur, box_mask, distort_hsv, gaussian_blur,
                                              gaussian_kernel, hsv_to_rgb, rand_scale, rgb_to_hsv)
from darknet_torch.data.augment_geometry import Crop, crop_resize, transform_boxes
from darknet_torch.data.mosaic import TileShift, draw_cut, mixup, paste_tile, place_tile_boxes
from darknet_torch.errors import CfgError

COLOURS = torch.tensor([(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0), (1, 0, 1), (0, 1, 1)], dtype=torch.float32)
TOL_PX = 2.0
GEOMETRY_ONLY = dict(hue=0.0, saturation=1.0, exposure=1.0)


def scene(width: int, height: int, rects: list[tuple[int, int, int, int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Black image with rectangles ``(colour, x0, y0, x1, y1)`` (pixel edges) and their exact labels."""
    image = torch.zeros(3, height, width)
    rows = []
    for colour, x0, y0, x1, y1 in rects:
        image[:, y0:y1, x0:x1] = COLOURS[colour][:, None, None]
        rows.append([colour, (x0 + x1) / 2 / width, (y0 + y1) / 2 / height, (x1 - x0) / width, (y1 - y0) / height])
    return image, torch.tensor(rows, dtype=torch.float32).reshape(-1, 5)


def colour_extent(image: torch.Tensor, colour: int) -> tuple[int, int, int, int] | None:
    """Pixel-edge bounding box of the pixels closer than 0.5 (L1) to a colour, or None."""
    mask = (image - COLOURS[colour][:, None, None]).abs().sum(0) < 0.5
    if not mask.any():
        return None
    rows, cols = mask.any(1).nonzero()[:, 0], mask.any(0).nonzero()[:, 0]
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def box_edges(label: torch.Tensor, width: int, height: int) -> np.ndarray:
    _, x, y, w, h = label.tolist()
    return np.array([(x - w / 2) * width, (y - h / 2) * height, (x + w / 2) * width, (y + h / 2) * height])


def assert_boxes_match_colours(image: torch.Tensor, labels: torch.Tensor, colours: range | list[int]) -> None:
    _, height, width = image.shape
    labelled = {int(c) for c in labels[:, 0]}
    assert len(labelled) == len(labels), "one box per colour expected"
    for label in labels:
        extent = colour_extent(image, int(label[0]))
        assert extent is not None, f"box {label.tolist()} has no pixels of its colour"
        np.testing.assert_allclose(box_edges(label, width, height), extent, atol=TOL_PX)
    for colour in set(colours) - labelled:
        extent = colour_extent(image, colour)
        if extent is not None:  # a box dropped for being < 1 px may leave a sliver of its colour
            assert min(extent[2] - extent[0], extent[3] - extent[1]) <= TOL_PX, f"colour {colour} visible, no box"


SCENE = [(0, 10, 12, 60, 50), (1, 100, 20, 150, 70), (2, 30, 70, 90, 118), (3, 120, 90, 158, 119),
         (4, 0, 0, 12, 9)]


# ----------------------------------------------------------------------------- geometry


def naive_crop_resize(image: np.ndarray, crop: Crop, net_w: int, net_h: int) -> np.ndarray:
    """cv::Mat crop with mean fill, then cv::resize INTER_LINEAR, written from the OpenCV source with loops."""
    channels, height, width = image.shape
    mean = image.reshape(channels, -1).mean(1)
    window = np.empty((channels, crop.sheight, crop.swidth))
    for j in range(crop.sheight):
        for i in range(crop.swidth):
            sy, sx = j + crop.ptop, i + crop.pleft
            inside = 0 <= sy < height and 0 <= sx < width
            window[:, j, i] = image[:, sy, sx] if inside else mean
    out = np.empty((channels, net_h, net_w))

    def taps(d: int, n_in: int, n_out: int) -> tuple[int, int, float]:
        f = (d + 0.5) * (n_in / n_out) - 0.5
        s = math.floor(f)
        f -= s
        if s < 0:
            s, f = 0, 0.0
        if s >= n_in - 1:
            s, f = n_in - 1, 0.0
        return s, min(s + 1, n_in - 1), f

    for y in range(net_h):
        y0, y1, fy = taps(y, crop.sheight, net_h)
        for x in range(net_w):
            x0, x1, fx = taps(x, crop.swidth, net_w)
            top = (1 - fx) * window[:, y0, x0] + fx * window[:, y0, x1]
            bottom = (1 - fx) * window[:, y1, x0] + fx * window[:, y1, x1]
            out[:, y, x] = (1 - fy) * top + fy * bottom
    return out


@pytest.mark.parametrize("pads, net", [((-3, 2, 1, -4), (5, 4)), ((2, 3, -2, -2), (13, 11)), ((0, 0, 0, 0), (9, 7)),
                                       ((-20, 0, 0, 0), (6, 6))])
def test_crop_resize_matches_opencv_reference(pads, net):
    image = torch.rand(3, 7, 9, generator=torch.Generator().manual_seed(1))
    crop = Crop(9, 7, *pads)
    got = crop_resize(image, crop, *net)
    np.testing.assert_allclose(got.numpy(), naive_crop_resize(image.double().numpy(), crop, *net), atol=1e-5)


def naive_transform_boxes(labels: np.ndarray, crop: Crop, flip: bool, net_w: int, net_h: int) -> list[list[float]]:
    """correct_boxes + fill_truth_detection transcribed box by box in np.float32."""
    f = np.float32
    sx, sy = f(crop.swidth) / f(crop.orig_w), f(crop.sheight) / f(crop.orig_h)
    dx, dy = (f(crop.pleft) / f(crop.orig_w)) / sx, (f(crop.ptop) / f(crop.orig_h)) / sy
    kx, ky = f(1.0 / float(sx)), f(1.0 / float(sy))
    out = []
    for cls, x, y, w, h in labels.astype(np.float32):
        left, right, top, bottom = x - w / f(2), x + w / f(2), y - h / f(2), y + h / f(2)
        if (x == 0 and y == 0) or x + w / f(2) < 0 or y + h / f(2) < 0 or x - w / f(2) > 1 or y - h / f(2) > 1:
            continue
        left, right, top, bottom = left * kx - dx, right * kx - dx, top * ky - dy, bottom * ky - dy
        if flip:
            left, right = f(1.0 - float(right)), f(1.0 - float(left))
        left, right, top, bottom = (min(max(v, f(0)), f(1)) for v in (left, right, top, bottom))
        x, y = (left + right) / f(2), (top + bottom) / f(2)
        w, h = min(max(right - left, f(0)), f(1)), min(max(bottom - top, f(0)), f(1))
        if w < f(1) / f(net_w) or h < f(1) / f(net_h) or x <= 0 or x > 1 or y <= 0 or y > 1:
            continue
        out.append([float(cls), float(x), float(y), float(w), float(h)])
    return out


def test_transform_boxes_matches_darknet_reference_exactly():
    rng = np.random.default_rng(3)
    labels = np.column_stack([rng.integers(0, 5, 300), rng.uniform(-0.2, 1.2, (300, 2)), rng.uniform(0, 0.6, (300, 2))])
    labels[:5, 1:3] = 0  # "wrong annotation" rows
    labels[5:10, 3:] = 0.001  # tiny boxes
    for trial in range(20):
        pads = [int(v) for v in rng.integers(-60, 60, 4)]
        crop = Crop(320, 240, *pads)
        flip = bool(trial % 2)
        got = transform_boxes(torch.tensor(labels, dtype=torch.float32), crop, flip, 96, 80)
        assert got.tolist() == naive_transform_boxes(labels, crop, flip, 96, 80)


def test_transform_boxes_hand_case_crop_left_half():
    labels = torch.tensor([[0, 0.2, 0.5, 0.2, 0.2], [1, 0.5, 0.5, 0.2, 0.2], [2, 0.75, 0.5, 0.1, 0.4]])
    got = transform_boxes(labels, Crop(100, 100, pleft=50, pright=0, ptop=0, pbot=0), False, 100, 100)
    # x' = (100 x - 50) / 50: box 0 ([0.1, 0.3]) is cut away; box 1 [0.4, 0.6] -> [0, 0.2]; box 2 [0.7, 0.8] -> [0.4, 0.6]
    np.testing.assert_allclose(got.numpy(), [[1, 0.1, 0.5, 0.2, 0.2], [2, 0.5, 0.5, 0.2, 0.4]], atol=1e-6)


def test_boxes_smaller_than_one_network_pixel_are_dropped():
    labels = torch.tensor([[0, 0.5, 0.5, 0.012, 0.5], [1, 0.5, 0.5, 0.5, 0.02]])
    identity = Crop(100, 100, 0, 0, 0, 0)
    assert transform_boxes(labels, identity, False, 100, 100).shape == (2, 5)
    kept = transform_boxes(labels, identity, False, 64, 64)  # 0.012 < 1/64
    assert kept[:, 0].tolist() == [1]


def test_flip_maps_x_to_one_minus_x():
    image, labels = scene(160, 120, SCENE)
    draw = draw_augmentation(AugmentConfig(jitter=0, flip=False, **GEOMETRY_ONLY), 160, 120, 160, 120,
                             np.random.default_rng(0))
    flipped = transform_boxes(labels, draw.crop, True, 160, 120)
    expected = labels.clone()
    expected[:, 1] = 1 - expected[:, 1]
    torch.testing.assert_close(flipped, expected, atol=1e-6, rtol=0)
    cfg = AugmentConfig(jitter=0, flip=True, **GEOMETRY_ONLY)
    for seed in range(8):  # flip is drawn with probability 1/2: see both outcomes
        out, boxes = augment([(image, labels)], cfg, 160, 120, np.random.default_rng(seed))
        if torch.equal(out, image.flip(-1)):
            assert_boxes_match_colours(out, boxes, range(5))
            break
    else:
        pytest.fail("no flip in 8 draws")


@pytest.mark.parametrize("letter_box", [False, True])
@pytest.mark.parametrize("net", [(96, 96), (128, 64), (224, 160)])
def test_random_crops_keep_boxes_on_their_pixels(letter_box, net):
    image, labels = scene(160, 120, SCENE)
    cfg = AugmentConfig(jitter=0.3, letter_box=letter_box, **GEOMETRY_ONLY)
    for seed in range(6):
        out, boxes = augment([(image, labels)], cfg, *net, np.random.default_rng(seed))
        assert out.shape == (3, net[1], net[0])
        assert_boxes_match_colours(out, boxes, range(5))


def test_boxes_entirely_cropped_out_are_removed():
    image, labels = scene(160, 120, SCENE)
    crop = Crop(160, 120, pleft=70, pright=0, ptop=0, pbot=0)  # keeps columns 70..159
    draw = AugmentDraw(crop, flip=False, dhue=0.0, dsat=1.0, dexp=1.0, blur=0, gaussian_noise=0)
    out, boxes = apply_augmentation(image, labels, draw, 90, 120, 200, np.random.default_rng(0))
    assert sorted(int(c) for c in boxes[:, 0]) == [1, 2, 3]  # rectangles 0 (x 10..60) and 4 (x 0..12) are gone
    assert colour_extent(out, 0) is None and colour_extent(out, 4) is None
    assert_boxes_match_colours(out, boxes, range(5))


def test_letterbox_keeps_aspect_with_mean_padding():
    image = torch.zeros(3, 100, 200)
    image[0, :, :100] = 1  # left half red, right half green
    image[1, :, 100:] = 1
    labels = torch.tensor([[0, 0.25, 0.5, 0.5, 1.0], [1, 0.75, 0.5, 0.5, 1.0]])
    cfg = AugmentConfig(jitter=0, letter_box=True, flip=False, **GEOMETRY_ONLY)
    out, boxes = augment([(image, labels)], cfg, 100, 100, np.random.default_rng(0))
    # ptop = pbot = -(200 - 100) / 2 = -50: a 200x200 window, halved; the image fills rows 25..74
    np.testing.assert_allclose(boxes[boxes[:, 0].argsort()].numpy(),
                               [[0, 0.25, 0.5, 0.5, 0.5], [1, 0.75, 0.5, 0.5, 0.5]], atol=1e-6)
    torch.testing.assert_close(out[:, :25], torch.tensor([0.5, 0.5, 0.0])[:, None, None].expand(3, 25, 100))
    torch.testing.assert_close(out[:, 25:75, :50], torch.tensor([1.0, 0, 0])[:, None, None].expand(3, 50, 50))


def test_jitter_and_resize_ranges():
    cfg = AugmentConfig(jitter=0.25, **GEOMETRY_ONLY)
    pads = np.array([[getattr(d.crop, k) for k in ("pleft", "pright", "ptop", "pbot")]
                     for d in (draw_augmentation(cfg, 200, 100, 64, 64, np.random.default_rng(s)) for s in range(300))])
    assert pads[:, :2].min() >= -50 and pads[:, :2].max() <= 50 and pads[:, 2:].min() >= -25 and pads[:, 2:].max() <= 25
    assert pads[:, :2].min() < -40 and pads[:, :2].max() > 40
    # resize=2 without jitter: one random number per side pair, in [int(100*(1-2)/2), int(100*(1-1/2)/2)] = [-50, 25]
    cfg = AugmentConfig(jitter=0, resize=2, **GEOMETRY_ONLY)
    for seed in range(50):
        crop = draw_augmentation(cfg, 100, 100, 64, 64, np.random.default_rng(seed)).crop
        assert crop.pleft == crop.ptop and crop.pright == crop.pbot  # Darknet reuses resize_r1 / resize_r2
        assert -50 <= crop.pleft <= 25 and -50 <= crop.pright <= 25


# ----------------------------------------------------------------------------- colour


def test_zero_ranges_are_the_identity():
    image = torch.rand(3, 40, 50, generator=torch.Generator().manual_seed(0))
    assert torch.equal(distort_hsv(image, 0.0, 1.0, 1.0), image)
    cfg = AugmentConfig(jitter=0, flip=False, hue=0, saturation=1, exposure=1)
    out, _ = augment([(image, torch.zeros(0, 5))], cfg, 50, 40, np.random.default_rng(5))
    assert torch.equal(out, image)


def test_hsv_round_trip():
    rgb = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(hsv_to_rgb(rgb_to_hsv(rgb)), rgb, atol=1e-6, rtol=0)
    hsv = rgb_to_hsv(torch.tensor([[1.0, 0.0], [0.5, 0.0], [0.0, 1.0]])[:, :, None])
    np.testing.assert_allclose(hsv[:, :, 0].numpy(), [[15, 120], [1, 1], [1, 1]], atol=1e-5)  # 30 deg, 240 deg


def pixel(r: float, g: float, b: float) -> torch.Tensor:
    return torch.tensor([r, g, b], dtype=torch.float32)[:, None, None]


@pytest.mark.parametrize("rgb, dhue, dsat, dexp, expected", [
    ((1, 0, 0), 60 / 179, 1, 1, (0, 1, 0)),  # +60 units = +120 degrees: red -> green
    ((0, 0, 1), 60 / 179, 1, 1, (1, 0, 0)),  # 120 + 60 = 180 units wraps to 0: blue -> red
    ((1, 0, 0), -0.1, 1, 1, (1, 0, 0)),  # 8-bit saturating add: hue 0 cannot go negative
    ((0.5, 0.5, 0.5), 0.3, 1, 1, (0.5, 0.5, 0.5)),  # grey has no hue
    ((0.5, 0.25, 0), 0, 1, 2, (1, 0.5, 0)),  # value x2
    ((1, 0.5, 0), 0, 1, 1.5, (1, 0.5, 0)),  # value saturates at 1 before HSV -> RGB, keeping the ratios
    ((1, 0.5, 0.5), 0, 2, 1, (1, 0, 0)),  # saturation 0.5 x2 = 1
    ((1, 0.5, 0.5), 0, 0.5, 1, (1, 0.75, 0.75)),
])
def test_hsv_hand_cases(rgb, dhue, dsat, dexp, expected):
    got = distort_hsv(pixel(*rgb), dhue, dsat, dexp)
    np.testing.assert_allclose(got[:, 0, 0].numpy(), expected, atol=1e-5)


def test_grey_images_only_get_exposure():
    image = torch.full((1, 4, 4), 0.6)
    torch.testing.assert_close(distort_hsv(image, 0.2, 3.0, 2.0), torch.ones(1, 4, 4))
    torch.testing.assert_close(distort_hsv(image, 0.2, 3.0, 0.5), torch.full((1, 4, 4), 0.3))


def test_rand_scale_is_inverted_half_the_time():
    rng = np.random.default_rng(0)
    draws = np.array([rand_scale(1.5, rng) for _ in range(2000)])
    assert draws.min() >= 1 / 1.5 - 1e-6 and draws.max() <= 1.5 + 1e-6
    assert 0.45 < (draws > 1).mean() < 0.55
    assert rand_scale(0, rng) == 1.0 and rand_scale(1, rng) == 1.0  # 0 means 1, as in load_thread


def naive_blur(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    pad = len(kernel) // 2
    padded = np.pad(image, ((0, 0), (pad, pad), (pad, pad)), mode="reflect")  # numpy reflect == BORDER_REFLECT_101
    k2 = np.outer(kernel, kernel)
    out = np.zeros_like(image)
    for dy in range(len(kernel)):
        for dx in range(len(kernel)):
            out += k2[dy, dx] * padded[:, dy:dy + image.shape[1], dx:dx + image.shape[2]]
    return out


def test_gaussian_kernels_and_blur():
    assert gaussian_kernel(3).tolist() == [0.25, 0.5, 0.25]
    k17 = gaussian_kernel(17).double()
    sigma = 0.3 * (8 - 1) + 0.8  # OpenCV's sigma for ksize 17
    assert k17.sum().item() == pytest.approx(1, abs=1e-6)
    assert (k17[8] / k17[7]).item() == pytest.approx(math.exp(1 / (2 * sigma ** 2)), rel=1e-5)
    image = torch.rand(3, 20, 24, generator=torch.Generator().manual_seed(4))
    for ksize in (3, 9, 17):
        np.testing.assert_allclose(gaussian_blur(image, ksize).numpy(),
                                   naive_blur(image.double().numpy(), gaussian_kernel(ksize).double().numpy()),
                                   atol=1e-5)
    torch.testing.assert_close(gaussian_blur(torch.full((3, 5, 5), 0.3), 17), torch.full((3, 5, 5), 0.3))


def test_background_blur_keeps_boxes_sharp():
    image = (torch.rand(3, 40, 60, generator=torch.Generator().manual_seed(5)) > 0.5).float()
    labels = torch.tensor([[0, 0.25, 0.5, 0.25, 0.5]])  # left int(0.125*60) = 7, width int(0.25*60) = 15; y 10..30
    mask = box_mask(labels, 60, 40)
    assert mask.sum().item() == 15 * 20 and mask[10:30, 7:22].all()
    out = blur(image, 1, labels)
    assert torch.equal(out[:, mask], image[:, mask])
    assert not torch.equal(out[:, ~mask], image[:, ~mask])
    torch.testing.assert_close(blur(image, 5, labels), gaussian_blur(image, 5))


def test_whole_image_blur_is_limited_by_the_smallest_object():
    boxes = torch.tensor([[0, 0.5, 0.5, 0.25, 0.5], [1, 0.5, 0.5, 0.5, 0.3]])  # smallest side: 0.25*64 = 16 px
    assert _effective_blur(7, boxes, 64, 64) == 2
    assert _effective_blur(7, torch.zeros(0, 5), 64, 64) == 0
    assert _effective_blur(1, torch.zeros(0, 5), 64, 64) == 1  # background blur is not limited


def test_gaussian_noise_only_brightens():
    image = torch.full((3, 16, 16), 0.5)
    noisy = add_gaussian_noise(image, 20, np.random.default_rng(0))
    assert (noisy >= image).all() and (noisy > image).float().mean() > 0.3
    assert torch.equal(add_gaussian_noise(image, 0, np.random.default_rng(0)), image)


# ----------------------------------------------------------------------------- determinism, config


FULL = AugmentConfig(jitter=0.3, hue=0.1, saturation=1.5, exposure=1.5, blur=5, gaussian_noise=8, mosaic=True)


@pytest.mark.parametrize("count", [1, 2, 4])
def test_fixed_seed_is_deterministic(count):
    image, labels = scene(160, 120, SCENE)
    sources = [(image, labels)] * count
    first = augment(sources, FULL, 96, 64, np.random.default_rng(11))
    second = augment(sources, FULL, 96, 64, np.random.default_rng(11))
    other = augment(sources, FULL, 96, 64, np.random.default_rng(12))
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert not torch.equal(first[0], other[0])


def test_source_count_draws():
    rng = np.random.default_rng(0)
    assert {draw_source_count(AugmentConfig(), rng) for _ in range(20)} == {1}
    assert {draw_source_count(AugmentConfig(mosaic=True), rng) for _ in range(40)} == {1, 4}
    assert {draw_source_count(AugmentConfig(mixup=True), rng) for _ in range(40)} == {1, 2}
    with pytest.raises(ValueError, match="1, 2"):
        augment([scene(8, 8, [])] * 3, AugmentConfig(), 8, 8, rng)


def test_config_from_cfg_sections_and_validation():
    net = {"hue": 0.1, "saturation": 1.5, "exposure": 1.5, "mosaic": True, "mixup": 0, "flip": True, "blur": 0}
    head = {"jitter": 0.3, "resize": 1.5, "max": 90}
    cfg = AugmentConfig.from_cfg(net, head)
    assert (cfg.jitter, cfg.resize, cfg.max_boxes, cfg.hue, cfg.mosaic, cfg.mixup) == (0.3, 1.5, 90, 0.1, True, False)
    assert AugmentConfig.from_cfg({"mixup": 1}, {}).mixup
    with pytest.raises(CfgError, match="jitter"):
        AugmentConfig(jitter=0.6)


class _WorstDraws:
    """A generator whose every draw is the top of its range: each crop side loses the most jitter and resize allow."""

    def random(self, size: int | None = None):
        return np.ones(size) if size else 1.0

    def integers(self, high: int) -> int:
        return 0


def test_jitter_with_resize_that_can_empty_the_crop_window_is_refused_up_front():
    """Each side may lose int(size*jitter) + int(size*(1 - 1/resize)/2) pixels (resize > 1; resize < 1 only shrinks
    by padding), so 2*jitter + 1 - 1/resize >= 1 can leave no pixel: refused when the config is built, not as a
    ValueError inside a DataLoader worker."""
    for jitter, resize in ((0.4, 1.5), (0.35, 1.5), (0.45, 1.2), (0.25, 2.0)):
        with pytest.raises(CfgError, match=f"jitter={jitter} with resize={resize}: the random crop window can be empty"):
            AugmentConfig(jitter=jitter, resize=resize)
    AugmentConfig(jitter=0.45, resize=0.5)  # downsizing only pads
    for jitter in np.arange(0, 0.5, 0.01):
        for resize in np.arange(1, 3, 0.02):
            if 2 * jitter + 1 - 1 / resize >= 1:
                continue
            cfg = AugmentConfig(jitter=float(jitter), resize=float(resize), **GEOMETRY_ONLY)
            for size in (1, 2, 3, 7, 333, 641):  # the worst draws still leave a window of at least 1 pixel
                assert draw_augmentation(cfg, size, size, 416, 416, _WorstDraws()).crop.swidth >= 1


def test_crop_window_refusal_names_the_heads_cfg_line():
    sections = type_sections(parse_cfg_text("[net]\nwidth=64\nheight=64\n[yolo]\nclasses=1\njitter=.4\nresize=1.5\n",
                                            "t.cfg"))
    with pytest.raises(CfgError, match=r"t.cfg:4 \[yolo\]: jitter=0.4 with resize=1.5"):
        AugmentConfig.from_cfg(sections[0], sections[1])


# ----------------------------------------------------------------------------- mosaic, mixup


def test_cut_points_stay_in_darknets_range():
    rng = np.random.default_rng(0)
    cuts = np.array([draw_cut(416, 320, rng) for _ in range(4000)])
    assert cuts[:, 0].min() == 83 and cuts[:, 0].max() == 332  # int(416*0.2), int(416*0.8), inclusive
    assert cuts[:, 1].min() == 64 and cuts[:, 1].max() == 256


def test_paste_tile_copies_the_pixels_next_to_the_cut():
    tile = torch.arange(2 * 10 * 12, dtype=torch.float32).reshape(2, 10, 12)
    canvas = torch.zeros(2, 10, 12)
    cut, shift = (5, 4), TileShift(left=2, right=1, top=3, bot=2)
    paste_tile(canvas, tile, 0, cut, shift)  # top-left quadrant <- rows 10-4-2=4.., cols 12-5-1=6..
    assert torch.equal(canvas[:, :4, :5], tile[:, 4:8, 6:11])
    paste_tile(canvas, tile, 3, cut, shift)  # bottom-right quadrant <- rows 3.., cols 2..
    assert torch.equal(canvas[:, 4:, 5:], tile[:, 3:9, 2:9])


def test_place_tile_boxes_hand_case():
    # Tile 0 of a 128x128 canvas cut at (64, 48), no shift: boxes move by -(128-64)/128 = -0.5 and -(128-48)/128.
    boxes = torch.tensor([[0, 0.9375, 0.75, 0.25, 0.25], [1, 0.1, 0.1, 0.1, 0.1]])
    free = place_tile_boxes(boxes, 0, (64, 48), TileShift(0, 0, 0, 0), 128, 128, mosaic_bound=False)
    # box 0: x 0.4375 (pixels 40..72, past the cut at 64: kept whole), y 0.125 (pixels 0..32); box 1 left the canvas
    np.testing.assert_allclose(free.numpy(), [[0, 0.4375, 0.125, 0.25, 0.25]], atol=1e-7)
    bound = place_tile_boxes(boxes, 0, (64, 48), TileShift(0, 0, 0, 0), 128, 128, mosaic_bound=True)
    np.testing.assert_allclose(bound.numpy(), [[0, 52 / 128, 0.125, 24 / 128, 0.25]], atol=1e-7)  # cut at x = 64
    # cut_y = 24: y = 0.75 - 104/128 = -0.0625, rows -24..8 -> clipped to 0..8 either way
    for mosaic_bound in (False, True):
        got = place_tile_boxes(boxes[:1], 0, (64, 24), TileShift(0, 0, 0, 0), 128, 128, mosaic_bound)
        np.testing.assert_allclose(got[0, [2, 4]].numpy(), [4 / 128, 8 / 128], atol=1e-7)
    # shifts move the tile towards its content: left_shift 8 on tile 1 -> x + (64 - 8)/128
    shifted = place_tile_boxes(boxes[:1], 1, (64, 48), TileShift(8, 0, 0, 0), 128, 128, mosaic_bound=False)
    assert shifted.numel() == 0  # 0.9375 + 0.4375 > 1: off the canvas
    shifted = place_tile_boxes(torch.tensor([[2, 0.25, 0.75, 0.25, 0.25]]), 1, (64, 48), TileShift(8, 0, 0, 0),
                               128, 128, mosaic_bound=False)
    np.testing.assert_allclose(shifted.numpy(), [[2, 0.6875, 0.125, 0.25, 0.25]], atol=1e-7)


TILES = [[(0, 20, 20, 90, 80)], [(1, 60, 30, 140, 100), (5, 5, 5, 25, 25)], [(2, 40, 10, 120, 90)],
         [(3, 10, 50, 70, 110), (4, 100, 10, 150, 60)]]
QUADRANT_OF = {0: 0, 1: 1, 5: 1, 2: 2, 3: 3, 4: 3}


@pytest.mark.parametrize("seed", range(6))
def test_mosaic_bound_boxes_match_their_tiles_pixels(seed):
    sources = [scene(160, 120, rects) for rects in TILES]
    cfg = AugmentConfig(jitter=0.3, mosaic=True, mosaic_bound=True, **GEOMETRY_ONLY)
    rng = np.random.default_rng(seed)
    out, boxes = augment(sources, cfg, 128, 96, rng)
    cut = draw_cut(128, 96, np.random.default_rng(seed))  # augment draws the cut first
    assert_boxes_match_colours(out, boxes, range(6))
    for label in boxes:
        x0, y0, x1, y1 = box_edges(label, 128, 96)
        quadrant = QUADRANT_OF[int(label[0])]
        qx0, qx1 = (0, cut[0]) if quadrant in (0, 2) else (cut[0], 128)
        qy0, qy1 = (0, cut[1]) if quadrant in (0, 1) else (cut[1], 96)
        assert qx0 - 1e-3 <= x0 and x1 <= qx1 + 1e-3 and qy0 - 1e-3 <= y0 and y1 <= qy1 + 1e-3


@pytest.mark.parametrize("seed", range(6))
def test_mosaic_unbounded_boxes_cover_their_pixels(seed):
    sources = [scene(160, 120, rects) for rects in TILES]
    cfg = AugmentConfig(jitter=0.3, mosaic=True, **GEOMETRY_ONLY)
    out, boxes = augment(sources, cfg, 128, 96, np.random.default_rng(seed))
    for label in boxes:  # Darknet clips only to the canvas: a box may reach over a neighbouring tile
        extent = colour_extent(out, int(label[0]))
        if extent is not None:
            x0, y0, x1, y1 = box_edges(label, 128, 96)
            assert x0 <= extent[0] + TOL_PX and y0 <= extent[1] + TOL_PX
            assert x1 >= extent[2] - TOL_PX and y1 >= extent[3] - TOL_PX
    labelled = {int(c) for c in boxes[:, 0]}
    for colour in set(range(6)) - labelled:
        extent = colour_extent(out, colour)
        assert extent is None or min(extent[2] - extent[0], extent[3] - extent[1]) <= TOL_PX


def test_mosaic_respects_max_boxes():
    sources = [scene(160, 120, rects) for rects in TILES]
    cfg = AugmentConfig(jitter=0, mosaic=True, max_boxes=2, **GEOMETRY_ONLY)
    for seed in range(5):
        assert len(augment(sources, cfg, 128, 96, np.random.default_rng(seed))[1]) <= 2


def test_mixup_averages_pixels_and_concatenates_boxes():
    a = (torch.zeros(3, 4, 4), torch.tensor([[0, 0.5, 0.5, 0.2, 0.2]]))
    b = (torch.ones(3, 4, 4), torch.tensor([[1, 0.4, 0.4, 0.2, 0.2], [2, 0.6, 0.6, 0.2, 0.2]]))
    image, labels = mixup(a, b, max_boxes=2)
    torch.testing.assert_close(image, torch.full((3, 4, 4), 0.5))
    assert labels[:, 0].tolist() == [0, 1]
