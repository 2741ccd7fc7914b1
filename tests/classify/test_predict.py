"""``classifier predict``: Darknet's pre-processing (resize_min + crop_image), utils.c top_k and the printout, checked
against loop transcriptions of the C functions and end to end through ``darknet_torch classify``."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from darknet_torch.classify import Classifier, top_k
from darknet_torch.cli.main import main
from darknet_torch.data.images import center_crop_min, crop_image, load_image, resize_image, resize_min
from darknet_torch.detect.predictor import Predictor
from darknet_torch.errors import CfgError
from darknet_torch.model.darknet import Darknet

# A small classifier in the official cfgs' style (tiny.cfg / darknet.cfg: conv, maxpool, 1x1 conv to the classes,
# avgpool, softmax, cost), with a [crop] after the input as cifar.cfg has.
MINI_CLASSIFIER = """[net]
width={w}
height={h}
channels=3
[crop]
crop_width={cw}
crop_height={ch}
noadjust=1
[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
activation=leaky
[maxpool]
size=2
stride=2
[convolutional]
filters=7
size=1
stride=1
pad=1
activation=linear
[avgpool]
[softmax]
groups=1
[cost]
type=sse
"""
NAMES = ["cat", "dog", "eagle", "giraffe", "horse", "person", "car"]


def _crop_loops(img: np.ndarray, dx: int, dy: int, w: int, h: int) -> np.ndarray:
    """image.c crop_image: r = constrain_int(j + dy, 0, h-1), c = constrain_int(i + dx, 0, w-1)."""
    c, in_h, in_w = img.shape
    out = np.zeros((c, h, w), img.dtype)
    for k in range(c):
        for j in range(h):
            for i in range(w):
                out[k, j, i] = img[k, min(max(j + dy, 0), in_h - 1), min(max(i + dx, 0), in_w - 1)]
    return out


def _c_div(a: int, b: int) -> int:
    """C integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


@pytest.mark.parametrize("dx,dy,w,h", [(0, 0, 5, 4), (2, 1, 3, 3), (-2, -1, 9, 8), (3, 2, 6, 6)])
def test_crop_image_matches_darknet_loops(dx, dy, w, h):
    img = torch.rand(3, 5, 6)
    np.testing.assert_array_equal(crop_image(img, dx, dy, w, h).numpy(), _crop_loops(img.numpy(), dx, dy, w, h))


@pytest.mark.parametrize("in_wh,net_wh", [((40, 30), (16, 16)), ((30, 40), (16, 16)), ((16, 16), (16, 16)),
                                          ((33, 17), (16, 24)), ((20, 50), (24, 16))])
def test_center_crop_min_follows_predict_classifier(in_wh, net_wh):
    """resize_min(im, net.w) then crop_image(resized, (rw - net.w)/2, (rh - net.h)/2, net.w, net.h), C division."""
    (in_w, in_h), (net_w, net_h) = in_wh, net_wh
    img = torch.rand(3, in_h, in_w)
    if in_w < in_h:
        rw, rh = net_w, in_h * net_w // in_w
    else:
        rw, rh = in_w * net_w // in_h, net_w
    resized = img if (rw, rh) == (in_w, in_h) else resize_image(img, rw, rh)
    assert resize_min(img, net_w).shape == (3, rh, rw)
    expected = _crop_loops(resized.numpy(), _c_div(rw - net_w, 2), _c_div(rh - net_h, 2), net_w, net_h)
    np.testing.assert_array_equal(center_crop_min(img, net_w, net_h).numpy(), expected)


def _top_k_loops(a: list[float], k: int) -> list[int]:
    """utils.c top_k: insertion into k slots with a strict '>' (earlier indices win ties)."""
    index = [-1] * k
    for i in range(len(a)):
        curr = i
        for j in range(k):
            if index[j] < 0 or a[curr] > a[index[j]]:
                curr, index[j] = index[j], curr
    return index


@pytest.mark.parametrize("seed", range(5))
def test_top_k_matches_darknet_including_ties(seed):
    values = np.random.default_rng(seed).integers(0, 6, 40).astype(np.float32) / 8  # many ties
    for k in (1, 5, 40):
        assert top_k(torch.from_numpy(values), k) == _top_k_loops(values.tolist(), k)


@pytest.fixture()
def classifier_files(tmp_path: Path) -> tuple[Path, Path, Path]:
    cfg = tmp_path / "mini.cfg"
    cfg.write_text(MINI_CLASSIFIER.format(w=20, h=20, cw=16, ch=16))
    torch.manual_seed(0)
    model = Darknet(cfg)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.3)
    with torch.no_grad():
        model.module_list[1].bn.running_var.uniform_(0.5, 2)
    weights = tmp_path / "mini.weights"
    model.save_darknet_weights(weights)
    names = tmp_path / "mini.names"
    names.write_text("\n".join(NAMES) + "\n")
    return cfg, weights, names


def _image(path: Path, w: int, h: int, seed: int) -> Path:
    pixels = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def test_classify_prints_darknet_lines(classifier_files, tmp_path, capsys):
    cfg, weights, names = classifier_files
    images = [_image(tmp_path / "a.png", 31, 23, 1), _image(tmp_path / "b.png", 18, 40, 2)]
    assert main(["classify", *map(str, images), "--cfg", str(cfg), "--weights", str(weights),
                 "--names", str(names), "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 * (1 + 5)
    model = Darknet(cfg).load_darknet_weights(weights).eval()
    for image, block in zip(images, (lines[:6], lines[6:])):
        assert re.fullmatch(rf"{re.escape(str(image))}: Predicted in \d+\.\d{{6}} milli-seconds\.", block[0])
        with torch.no_grad():  # the network's output on predict_classifier's input
            probs = model(center_crop_min(load_image(image), 20, 20)[None])[0]
        expected = [f"{NAMES[i]}: {probs[i].item():f}" for i in _top_k_loops(probs.tolist(), 5)]
        assert block[1:] == expected
        assert abs(probs.sum().item() - 1) < 1e-5  # [softmax] then [cost]: the output is the softmax


def test_classify_data_file_gives_names_and_top(classifier_files, tmp_path, capsys):
    cfg, weights, names = classifier_files
    data = tmp_path / "mini.data"
    data.write_text(f"classes=7\nlabels={names}\ntop=2\n")
    image = _image(tmp_path / "a.png", 24, 24, 3)
    assert main(["classify", str(image), "--cfg", str(cfg), "--weights", str(weights), "--data", str(data)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and all(line.split(":")[0] in NAMES for line in lines[1:])
    assert main(["classify", str(image), "--cfg", str(cfg), "--weights", str(weights), "--data", str(data),
                 "-t", "4"]) == 0  # Darknet's -t flag
    assert len(capsys.readouterr().out.splitlines()) == 5
    data.write_text(f"classes=3\nnames={names}\n")  # top is capped at the .data's classes, as Darknet does
    assert main(["classify", str(image), "--cfg", str(cfg), "--weights", str(weights), "--data", str(data)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 4


def test_darknet_classifier_predict_command_line(classifier_files, tmp_path, capsys):
    """``classifier predict DATA CFG WEIGHTS IMAGE -t 3`` word for word prints classify's lines."""
    cfg, weights, names = classifier_files
    data = tmp_path / "mini.data"
    data.write_text(f"classes=7\nnames={names}\n")
    image = _image(tmp_path / "a.png", 26, 21, 5)
    assert main(["classifier", "predict", str(data), str(cfg), str(weights), str(image), "-t", "3"]) == 0
    darknet = capsys.readouterr().out.splitlines()
    assert main(["classify", str(image), "--data", str(data), "--cfg", str(cfg), "--weights", str(weights),
                 "--top", "3"]) == 0
    ours = capsys.readouterr().out.splitlines()
    assert len(darknet) == 4 and darknet[1:] == ours[1:]
    assert main(["classifier", "predict", str(data), str(cfg)]) == 2
    assert "classifier predict takes DATA CFG WEIGHTS [IMAGE]" in capsys.readouterr().err


def test_classify_errors(classifier_files, tmp_path, capsys):
    cfg, weights, names = classifier_files
    good = _image(tmp_path / "a.png", 24, 24, 4)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    assert main(["classify", str(good), str(bad), "--cfg", str(cfg), "--weights", str(weights)]) == 1
    captured = capsys.readouterr()
    assert "bad.jpg" in captured.err and captured.out.count("Predicted in") == 1
    short = tmp_path / "short.names"
    short.write_text("cat\ndog\n")
    assert main(["classify", str(good), "--cfg", str(cfg), "--weights", str(weights), "--names", str(short)]) == 2
    assert "2 class names but the network outputs 7 values" in capsys.readouterr().err


def test_detector_cfg_is_refused():
    with pytest.raises(CfgError, match="is a detector"):
        Classifier(Darknet(Path(__file__).resolve().parents[2] / "cfg" / "yolov3-tiny.cfg"))


def test_detect_refuses_a_classifier(classifier_files):
    cfg, _, _ = classifier_files
    with pytest.raises(CfgError, match="no \\[yolo\\]/\\[region\\] head.*use 'darknet_torch classify'"):
        Predictor(Darknet(cfg))


def test_a_grayscale_classifier_is_refused_naming_the_channels_line(tmp_path):
    cfg = tmp_path / "gray.cfg"
    cfg.write_text(MINI_CLASSIFIER.format(w=20, h=20, cw=16, ch=16).replace("channels=3", "channels=1"))
    with pytest.raises(CfgError, match=r"gray.cfg:4 \[net\] channels: channels=1: classification feeds"):
        Classifier(Darknet(cfg))
