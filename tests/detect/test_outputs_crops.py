"""``detect --crop``: crop geometry and file names by hand, and the real run's crops against its printed boxes."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from darknet_torch.cli.main import main
from darknet_torch.detect.outputs_crops import class_folder_name, crop_box, crops
from darknet_torch.detect.predictor import Detection


def test_crop_box_covers_the_box_and_is_clipped():
    # 100 x 80 image; box centre (0.5, 0.5), size 0.255 x 0.5: x 37.25..62.75 -> 37..63, y 20..60
    assert crop_box(Detection(0, "a", 0.9, 0.5, 0.5, 0.255, 0.5), 100, 80) == (37, 20, 63, 60)
    # reaching outside the image on every side: the whole image
    assert crop_box(Detection(0, "a", 0.9, 0.5, 0.5, 1.5, 1.5), 100, 80) == (0, 0, 100, 80)
    # a degenerate box at the right edge still gives one pixel
    assert crop_box(Detection(0, "a", 0.9, 1.2, 0.5, 0.0, 0.0), 100, 80) == (99, 40, 100, 41)


def test_class_folder_names_are_safe():
    assert class_folder_name("traffic light") == "traffic light"
    assert class_folder_name("a/b\\c:d") == "a_b_c_d"
    assert class_folder_name("..") == "_"


def test_crops_follow_the_shown_boxes_in_order():
    image = Image.fromarray(np.arange(100 * 80 * 3, dtype=np.uint32).reshape(80, 100, 3).astype(np.uint8))
    dets = [Detection(1, "b", 0.4, 0.5, 0.5, 0.2, 0.5), Detection(3, "d", 0.9, 0.5, 0.5, 0.2, 0.5),
            Detection(0, "a", 0.1, 0.1, 0.2, 0.1, 0.2)]  # one box with classes b, d; one below thresh
    got = crops(image, dets, 0.25, "img", ".png")
    assert [str(path) for path, _ in got] == ["crops/d/img_1.png"]  # the best class names the box
    assert got[0][1].size == (20, 40)
    assert np.array_equal(np.asarray(got[0][1]), np.asarray(image)[20:60, 40:60])


def test_cli_crop_writes_one_crop_per_printed_box(tmp_path, shared_dir, golden_dir, real_weights, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(shared_dir / "images" / "dog.jpg", photos / "dog.jpg")
    out = tmp_path / "out"
    assert main(["detect", str(photos), "--output", str(out), "--crop", "--ext-output", "--no-save-img",
                 "--cfg", str(golden_dir / "real" / "yolov3-tiny_mask123.cfg"), "--weights", str(real_weights),
                 "--workers", "0", "--no-progress"]) == 0
    printed = re.findall(r"^(\w[\w ]*): \d+%\s+\(left_x:\s+(-?\d+)\s+top_y:\s+(-?\d+)\s+width:\s+(\d+)\s+height:"
                         r"\s+(\d+)\)", capsys.readouterr().out, re.MULTILINE)
    files = sorted((out / "crops").rglob("*.jpg"))
    assert printed and len(files) == len(printed)
    assert sorted({path.parent.name for path in files}) == sorted({name for name, *_ in printed})
    with Image.open(shared_dir / "images" / "dog.jpg") as source:
        width, height = source.size
    sizes = sorted(Image.open(path).size for path in files)
    # the printed box (rounded) against the crop (box widened to whole pixels, clipped): within 2 pixels
    expected = sorted((min(int(w), width - max(int(x), 0)), min(int(h), height - max(int(y), 0)))
                      for _, x, y, w, h in printed)
    assert all(abs(a - b) <= 2 for size, want in zip(sizes, expected) for a, b in zip(size, want))
    assert not list(out.glob("*.jpg"))  # --no-save-img: crops only
