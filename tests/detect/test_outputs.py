"""Darknet's text/JSON forms, drawing and file writing, on hand-made detections whose answers are known by hand."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from darknet_torch.detect.outputs import (OutputWriter, annotated_image_path, label_file_path, output_names,
                                          write_json)
from darknet_torch.detect.outputs_draw import (_font, _label_pixels, _layout, _outline, _Shape, _text_colour,
                                               class_color, draw_detections, draw_detections_on_array, font_size,
                                               line_width)
from darknet_torch.detect.outputs_format import (COCO_CATEGORY_IDS, coco_image_id, coco_records, darknet_json_frame,
                                                 darknet_printout, group_by_box, label_lines, select_boxes)
from darknet_torch.detect.predictor import Detection
from darknet_torch.errors import DataError


def det(class_id: int, score: float, x: float, y: float, w: float, h: float, name: str | None = None) -> Detection:
    """A Detection holding float32 values, as Predictor.to_detections produces them."""
    f = [float(np.float32(v)) for v in (score, x, y, w, h)]
    return Detection(class_id, name or f"c{class_id}", *f)


# Box A (left edge 0.375) has classes 1 and 3, box B (left edge 0.05) only class 0: listed A first, printed B first.
BOX_A = (0.5, 0.5, 0.25, 0.5)
BOX_B = (0.1, 0.2, 0.1, 0.2)
DETS = [det(1, 0.40, *BOX_A), det(3, 0.90, *BOX_A), det(0, 0.125, *BOX_B)]


def test_group_by_box_keeps_consecutive_entries_of_one_box_together():
    assert [[d.class_id for d in g] for g in group_by_box(DETS)] == [[1, 3], [0]]


def test_printout_sorts_by_left_edge_and_lists_best_class_first():
    # 100x80 image. A: left 0.375*100 = 37.5 -> C round() = 38; top 0.25*80 = 20; 25 x 40 pixels.
    # B: left 0.05*100 = 5, top 0.1*80 = 8, 10 x 16. Percent: %.0f of float32(prob*100); 0.125*100 = 12.5 exactly,
    # which printf rounds to even: 12.
    assert darknet_printout(DETS, 100, 80, thresh=0.1) == [
        "c0: 12%\t(left_x:    5   top_y:    8   width:   10   height:   16)",
        "c3: 90%\t(left_x:   38   top_y:   20   width:   25   height:   40)",
        "c1: 40%\t(left_x:   38   top_y:   20   width:   25   height:   40)",
    ]
    assert darknet_printout(DETS, 100, 80, thresh=0.1, ext_output=False) == ["c0: 12%", "c3: 90%", "c1: 40%"]


def test_printout_threshold_is_strict_and_filters_other_classes():
    # At thresh 0.4 the 0.40 class of box A (float32 0.4 is not > float32 0.4) and box B (0.125) disappear.
    assert darknet_printout(DETS, 100, 80, thresh=0.4, ext_output=False) == ["c3: 90%"]


def test_printout_rounds_half_away_from_zero_and_prints_negative_zero_like_c():
    # left = (0.0 - 0.006/2) * 100 = -0.3 (float32) -> C round = -0.0, printed "  -0"; top = (0.5-0.25)*10 = 2.5 -> 3.
    line = darknet_printout([det(0, 0.5, 0.0, 0.5, 0.006, 0.5)], 100, 10)[0]
    assert line == "c0: 50%\t(left_x:   -0   top_y:    3   width:    1   height:    5)"


def test_printout_sort_is_stable_for_equal_left_edges():
    first, second = det(5, 0.6, 0.5, 0.3, 0.2, 0.2), det(2, 0.7, 0.5, 0.7, 0.2, 0.2)
    assert darknet_printout([first, second], 10, 10, ext_output=False) == ["c5: 60%", "c2: 70%"]
    assert darknet_printout([second, first], 10, 10, ext_output=False) == ["c2: 70%", "c5: 60%"]


def test_dont_show_classes_are_never_best_but_are_listed_after_it():
    hidden = [det(0, 0.9, *BOX_A, name="dont_show"), det(1, 0.5, *BOX_A, name="car"),
              det(0, 0.8, *BOX_B, name="dont_show")]
    # Box A: best is "car" (the higher dont_show cannot be best), then dont_show; box B has nothing to show.
    assert darknet_printout(hidden, 10, 10, ext_output=False) == ["car: 50%", "dont_show: 90%"]
    assert [b.best.name for b in select_boxes(hidden, 0.25)] == ["car"]
    assert [o["name"] for o in darknet_json_frame(1, "x.jpg", hidden)["objects"]] == ["car"]


def test_ties_pick_the_lowest_class_as_best():
    tie = [det(4, 0.5, *BOX_A), det(7, 0.5, *BOX_A)]
    assert darknet_printout(tie, 10, 10, ext_output=False) == ["c4: 50%", "c7: 50%"]
    assert label_lines(tie) == ["4 0.5000 0.5000 0.2500 0.5000"]


def test_label_lines_one_per_box_best_class_unclipped():
    outside = det(2, 0.3, -0.01, 1.02, 0.5, 0.25)
    assert label_lines([*DETS, outside], thresh=0.1) == [
        "3 0.5000 0.5000 0.2500 0.5000", "0 0.1000 0.2000 0.1000 0.2000", "2 -0.0100 1.0200 0.5000 0.2500"]
    assert label_lines(DETS, thresh=0.25) == ["3 0.5000 0.5000 0.2500 0.5000"]


def test_json_frame_is_darknets_out_form():
    frame = darknet_json_frame(7, Path("a/b.jpg"), DETS[:1])
    d = DETS[0]
    assert frame == {"frame_id": 7, "filename": "a/b.jpg", "objects": [
        {"class_id": 1, "name": "c1", "relative_coordinates": {"center_x": d.x, "center_y": d.y, "width": d.w,
                                                                "height": d.h}, "confidence": d.score}]}


def test_json_frame_leaves_out_probabilities_up_to_0_005_as_detection_to_json():
    just_above = float(np.nextafter(np.float32(0.005), np.float32(1)))
    low = [det(0, 0.004, *BOX_A), det(1, 0.005, *BOX_A), det(2, just_above, *BOX_A), det(3, 0.3, *BOX_B)]
    assert [o["class_id"] for o in darknet_json_frame(1, "x.jpg", low)["objects"]] == [2, 3]


@pytest.mark.parametrize(("name", "expected"), [
    ("000000000139.jpg", 139), ("COCO_val2014_000000000042.jpg", 42), ("dir_1/7.png", 7), ("dog.jpg", None),
    ("img_12a.jpg", None), ("img_\u00b2.jpg", None)])  # "\u00b2".isdigit() is True, int() refuses it
def test_coco_image_id_is_the_number_after_the_last_underscore(name, expected):
    assert coco_image_id(name) == expected


def test_coco_records_clip_to_the_image_and_map_categories():
    # 200x100 image; box centre (0.05, 0.5) size (0.2, 0.4): x from -0.05*200 (clipped to 0) to 0.15*200 = 30.
    (rec,) = coco_records(9, [det(11, 0.5, 0.05, 0.5, 0.2, 0.4)], 200, 100, COCO_CATEGORY_IDS)
    assert rec["image_id"] == 9 and rec["category_id"] == 13 and rec["score"] == 0.5
    assert rec["bbox"] == pytest.approx([0.0, 30.0, 30.0, 40.0], abs=1e-4)
    assert coco_records(9, [det(11, 0.5, 0.05, 0.5, 0.2, 0.4)], 200, 100)[0]["category_id"] == 11
    assert len(COCO_CATEGORY_IDS) == 80 and COCO_CATEGORY_IDS[-1] == 90


# ----------------------------------------------------------------------------- drawing


def test_class_colours_follow_darknets_get_color():
    # class 0: offset 0 -> ramp corner (1,0,1); class 1: offset 123457 % 80 = 17, ratio 17/80*5 = 1.0625 between
    # corners (0,0,1) and (0,1,1): red = ramp column 2 = 1, green = 0.0625 -> 16, blue = 0.
    assert class_color(0, 80) == (255, 0, 255)
    assert class_color(1, 80) == (255, 16, 0)
    assert class_color(3, 4) != class_color(1, 4)


def test_draw_boxes_in_class_colour_without_touching_the_input():
    image = Image.new("RGB", (200, 100), (128, 128, 128))
    out = draw_detections(image, [det(1, 0.9, 0.5, 0.75, 0.5, 0.4)], num_classes=80)
    colour = class_color(1, 80)
    assert out.size == image.size and image.getpixel((50, 55)) == (128, 128, 128)
    # Box: left int(0.25*200) = 50, bottom int(0.95*100) = 95; the outline is on those lines.
    assert out.getpixel((50, 80)) == colour and out.getpixel((100, 95)) == colour
    assert out.getpixel((100, 75)) == (128, 128, 128)  # inside the box, under no label
    labelled = np.asarray(out)[:55, 50:150]  # the label sits above the box top (y = 55)
    assert (labelled == colour).all(axis=2).sum() > 100


@pytest.mark.parametrize("size", [(8, 6), (640, 480), (4000, 3000)])
def test_drawing_scales_with_image_size(size):
    w, h = size
    assert line_width(w, h) >= 1 and font_size(w, h) >= 10
    assert line_width(4000, 3000) > line_width(640, 480) and font_size(4000, 3000) > font_size(640, 480)
    out = draw_detections(Image.new("RGB", size), [det(0, 0.5, 0.5, 0.5, 1.5, 1.5)], 80)  # box larger than image
    assert out.size == size


@pytest.mark.parametrize("size", [(640, 480), (160, 120), (30, 20)])
def test_drawing_in_place_on_an_array_gives_the_same_pixels(size):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    # overlapping boxes, one at the top edge (label inside), one at the right edge, one larger than the image
    dets = [det(1, 0.9, 0.5, 0.5, 0.3, 0.4), det(2, 0.6, 0.55, 0.45, 0.2, 0.2), det(0, 0.7, 0.3, 0.02, 0.2, 0.1),
            det(5, 0.8, 0.97, 0.5, 0.1, 0.3), det(7, 0.3, 0.5, 0.5, 1.5, 1.5)]
    track_ids = {(dets[0].x, dets[0].y, dets[0].w, dets[0].h): 3}
    for chosen in (dets[:1], dets[:4], dets, []):
        expected = np.asarray(draw_detections(Image.fromarray(pixels), chosen, 80, track_ids=track_ids))
        drawn = pixels.copy()
        assert draw_detections_on_array(drawn, chosen, 80, track_ids=track_ids) == bool(chosen)
        assert np.array_equal(drawn, expected)


def pillow_drawing(pixels: np.ndarray, detections: list[Detection], track_ids=None) -> np.ndarray:
    """What the drawing was before numpy and the label cache: every shape drawn by ImageDraw on the whole image."""
    image = Image.fromarray(pixels)
    draw, font = ImageDraw.Draw(image), _font(font_size(*image.size))
    for s in _layout(image.size, detections, 80, 0.25, True, track_ids):
        if s.label is None:
            draw.rectangle((s.x, s.y, s.x1, s.y1), outline=s.colour, width=s.stroke)
        else:
            x0, y0, x1, y1 = draw.textbbox((0, 0), s.text, font=font)
            pad = max(1, (y1 - y0) // 5)
            draw.rectangle((s.x, s.y, s.x + x1 - x0 + 2 * pad, s.y + y1 - y0 + 2 * pad), fill=s.colour)
            draw.text((s.x + pad - x0, s.y + pad - y0), s.text, fill=_text_colour(s.colour), font=font)
    return np.asarray(image)


@pytest.mark.parametrize("size", [(640, 480), (1280, 720), (160, 120), (30, 20), (17, 300), (300, 9)])
def test_drawing_equals_pillow_drawing_every_shape(size):
    # random scenes: thin and degenerate boxes (Pillow draws their outline beyond the box), boxes outside the image
    # or across its edges, several classes per box, track ids; labels rendered once and reused from the cache
    rng = np.random.default_rng(size[0])
    for _ in range(12):
        dets, track_ids = [], {}
        for _ in range(rng.choice([0, 1, 3, 8])):
            kind = rng.random()
            x, y = rng.uniform(-0.3, 1.3, 2) if kind < 0.3 else rng.random(2)
            w, h = rng.random(2) * (0.01 if kind > 0.8 else 0.6)
            for c in sorted(rng.choice(80, rng.choice([1, 1, 3]), replace=False)):
                dets.append(det(int(c), float(rng.choice([0.3, 0.91, rng.random()])), x, y, w, h))
            if rng.random() < 0.5:
                track_ids[(dets[-1].x, dets[-1].y, dets[-1].w, dets[-1].h)] = int(rng.integers(100))
        pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        expected = pillow_drawing(pixels, dets, track_ids)
        for _ in range(2):  # the second time from the label cache
            drawn = pixels.copy()
            draw_detections_on_array(drawn, dets, 80, track_ids=track_ids)
            assert np.array_equal(drawn, expected)
        assert np.array_equal(np.asarray(draw_detections(Image.fromarray(pixels), dets, 80, track_ids=track_ids)),
                              expected)


def test_outlines_equal_pillow_rectangles_down_to_one_pixel():
    base = np.random.default_rng(1).integers(0, 256, (10, 12, 3), dtype=np.uint8)
    for stroke in range(1, 5):
        for x0, x1 in [(0, 0), (0, 11), (2, 3), (4, 9), (10, 11), (11, 11), (5, 5)]:
            for y0, y1 in [(0, 0), (0, 9), (1, 2), (3, 8), (8, 9), (9, 9), (4, 4), (2, 6)]:
                image = Image.fromarray(base)
                ImageDraw.Draw(image).rectangle((x0, y0, x1, y1), outline=(1, 2, 3), width=stroke)
                drawn = base.copy()
                _outline(drawn, _Shape(x0, y0, (1, 2, 3), x1, y1, stroke))
                assert np.array_equal(drawn, np.asarray(image)), (x0, y0, x1, y1, stroke)


def test_cached_label_pixels_are_read_only():
    pixels = _label_pixels("dog 87%", _font(17), (255, 0, 255))
    assert not pixels.flags.writeable and pixels.shape[2] == 3 and (pixels[0, 0] == (255, 0, 255)).all()


# ----------------------------------------------------------------------------- files


def test_json_keeps_a_file_name_that_is_not_utf8(tmp_path: Path):
    # a folder holding caf\xe9.jpg (Latin-1 bytes): results.json raised UnicodeEncodeError, the run ended in a
    # traceback and the JSON was lost
    name = os.fsdecode(b"caf\xe9.jpg")
    path = tmp_path / "results.json"
    write_json(path, [{"filename": name, "name": "caf\u00e9"}])
    text = path.read_bytes()
    assert b"caf\\udce9.jpg" in text and "caf\u00e9".encode() in text  # the escape; real non-ASCII stays UTF-8
    assert os.fsencode(json.loads(text.decode("utf-8"))[0]["filename"]) == b"caf\xe9.jpg"


def test_output_names_differing_only_in_case_are_made_unique():
    # on macOS/Windows dog.jpg and Dog.png wrote the same dog.txt label file: the second replaced the first
    paths = [Path("a/dog.jpg"), Path("b/Dog.png"), Path("c/DOG_2.jpg"), Path("d/dog.jpg")]
    assert output_names(paths) == ["dog", "Dog_2", "DOG_2_2", "dog_3"]


def test_output_names_are_unique_stems():
    paths = [Path("a/dog.jpg"), Path("b/dog.png"), Path("cat.jpg"), Path("c/dog.jpg")]
    assert output_names(paths) == ["dog", "dog_2", "cat", "dog_3"]


def test_writer_writes_images_and_labels(tmp_path: Path):
    source = tmp_path / "in" / "photo.png"
    source.parent.mkdir()
    Image.new("RGB", (64, 48), (10, 20, 30)).save(source)
    writer = OutputWriter(tmp_path / "out", num_classes=80, thresh=0.25, save_labels=True, decoder="pil")
    writer.submit(source, "photo", DETS)
    assert writer.close() == []
    assert label_file_path(tmp_path / "out", "photo").read_text() == "3 0.5000 0.5000 0.2500 0.5000\n"
    with Image.open(annotated_image_path(tmp_path / "out", "photo", source)) as written:
        assert written.size == (64, 48) and written.format == "PNG"
    assert [p.name for p in (tmp_path / "out").iterdir() if p.name.startswith(".")] == []  # no temp files left


def test_writer_reports_each_failed_file_with_its_path(tmp_path: Path):
    source = tmp_path / "photo.jpg"
    Image.new("RGB", (16, 16)).save(source)
    out = tmp_path / "out"
    out.mkdir()
    (out / "labels").write_text("a file where the labels folder should be")
    (out / "photo.jpg").mkdir()  # a folder where the annotated image should go
    writer = OutputWriter(out, num_classes=80, thresh=0.25, save_labels=True, decoder="pil")
    writer.submit(source, "photo", DETS)
    errors = writer.close()
    assert len(errors) == 2
    assert any(str(out / "labels" / "photo.txt") in e for e in errors)
    assert any(str(out / "photo.jpg") in e for e in errors)


def test_write_json_is_complete_json(tmp_path: Path):
    write_json(tmp_path / "r.json", [darknet_json_frame(1, "x.jpg", DETS)])
    assert json.loads((tmp_path / "r.json").read_text())[0]["objects"][1]["name"] == "c3"
