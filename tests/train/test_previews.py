"""Batch previews (--show-imgs): a mosaic of the augmented images with their target boxes, saved on request."""
from __future__ import annotations

import torch
from PIL import Image

from darknet_torch.detect.outputs_draw import class_color
from darknet_torch.train.previews import REQUEST_FILE, BatchPreviews, batch_mosaic

NAMES = ["a", "b", "c"]


def test_mosaic_places_each_image_and_draws_its_boxes():
    images = torch.zeros(4, 3, 64, 80)
    images[1] = 1.0  # white second image (top right)
    # image 2 (bottom left): a class-2 box from x 0.25..0.75 of the tile, y 0.25..0.75
    targets = torch.tensor([[2, 2, 0.5, 0.5, 0.5, 0.5]])
    mosaic = batch_mosaic(images, targets, NAMES)
    assert mosaic.size == (160, 128)  # 2 x 2 tiles of 80 x 64
    assert mosaic.getpixel((120, 32)) == (255, 255, 255)
    assert mosaic.getpixel((40, 64 + 40)) == (0, 0, 0)  # inside the box: untouched
    assert mosaic.getpixel((20, 64 + 40)) == class_color(2, 3)  # left edge (x = 0.25 * 80)
    assert mosaic.getpixel((40, 40)) == (0, 0, 0)  # image 0 has no box


def test_large_batches_are_scaled_to_fit(tmp_path):
    mosaic = batch_mosaic(torch.rand(20, 3, 416, 416), torch.zeros(0, 6), NAMES)
    assert max(mosaic.size) <= 1280 and mosaic.size[0] == 4 * round(416 * 1280 / (4 * 416))


def test_first_iterations_then_on_request(tmp_path):
    previews = BatchPreviews(tmp_path / "batches", NAMES, first=2)
    saved = []
    for k in range(1, 6):
        if k == 4:
            (tmp_path / "batches" / REQUEST_FILE).touch()
        if previews.wanted():
            saved.append(previews.save(k, torch.rand(2, 3, 32, 32), torch.zeros(0, 6)).name)
    assert saved == ["batch_1.jpg", "batch_2.jpg", "batch_4.jpg"]
    assert not (tmp_path / "batches" / REQUEST_FILE).exists()
    with Image.open(tmp_path / "batches" / "batch_4.jpg") as image:
        assert image.format == "JPEG" and image.size == (64, 32)
