"""``[local]``, ``[crop]``, ``[cost]``, ``[detection]``, ``[contrastive]`` against loop transcriptions of the C forward
functions (AlexeyAB src/local_layer.c, crop_layer.c, detection_layer.c, network.c get_network_output), weights IO,
and the named refusals.

No golden dumps exist for these layers, so each expected value is computed by a plain loop written after the C code
(im2col_cpu + one gemm per location, the crop index arithmetic, softmax_array + logistic), independent of the module.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from darknet_torch.config import parse_cfg_text, type_sections
from darknet_torch.detect.predictor import Predictor
from darknet_torch.errors import CfgError, UnsupportedCfgError, WeightsError
from darknet_torch.model.darknet import Darknet


def _net(text: str) -> Darknet:
    return Darknet(type_sections(parse_cfg_text(text, "test.cfg"))).eval()


@torch.no_grad()
def _layers(net: Darknet, x: torch.Tensor) -> list[torch.Tensor]:
    return net.forward_layers(x)


def _im2col(img: np.ndarray, size: int, stride: int, pad: int) -> np.ndarray:
    """im2col.c ``im2col_cpu``: rows (c, ky, kx), columns (out_y, out_x), zero outside the image."""
    c, h, w = img.shape
    out_h, out_w = (h + 2 * pad - size) // stride + 1, (w + 2 * pad - size) // stride + 1
    cols = np.zeros((c * size * size, out_h * out_w), np.float64)
    for row in range(c * size * size):
        kx, ky, ch = row % size, (row // size) % size, row // size // size
        for y in range(out_h):
            for x in range(out_w):
                iy, ix = ky + y * stride - pad, kx + x * stride - pad
                if 0 <= iy < h and 0 <= ix < w:
                    cols[row, y * out_w + x] = img[ch, iy, ix]
    return cols


def _local_forward(img, weights, biases, n, size, stride, pad):
    """forward_local_layer: output = biases; per location j, gemm(filters_j [n x k], column j); then activation."""
    cols = _im2col(img, size, stride, pad)
    k, locations = cols.shape
    out = np.array(biases, np.float64).reshape(n * locations).copy()
    for j in range(locations):
        a = weights[j * n * k: (j + 1) * n * k]
        for f in range(n):
            out[f * locations + j] += sum(a[f * k + i] * cols[i, j] for i in range(k))
    return out


@pytest.mark.parametrize("size,stride,pad", [(3, 1, 1), (3, 2, 1), (2, 1, 0), (3, 2, 0), (1, 1, 0)])
def test_local_matches_darknet_loops(size, stride, pad):
    net = _net(f"[net]\nwidth=7\nheight=6\nchannels=2\n[local]\nfilters=3\nsize={size}\nstride={stride}\npad={pad}\n"
               f"activation=linear\n")
    layer = net.module_list[0]
    torch.manual_seed(0)
    with torch.no_grad():
        layer.weight.normal_()
        layer.bias.normal_()
    x = torch.randn(2, 2, 6, 7)
    out = _layers(net, x)[0]
    weights = layer.weight.detach().double().numpy().ravel()
    biases = layer.bias.detach().double().numpy().ravel()
    for b in range(2):
        expected = _local_forward(x[b].double().numpy(), weights, biases, 3, size, stride, pad)
        np.testing.assert_allclose(out[b].double().numpy().ravel(), expected, rtol=0, atol=1e-5)
    assert tuple(out.shape[1:]) == net.layer_infos[0].out_shape


def test_local_activation_is_applied():
    net = _net("[net]\nwidth=4\nheight=4\nchannels=1\n[local]\nfilters=2\nsize=3\npad=1\nactivation=leaky\n")
    with torch.no_grad():
        net.module_list[0].bias.fill_(-1.0)
        net.module_list[0].weight.zero_()
    out = _layers(net, torch.rand(1, 1, 4, 4))[0]
    torch.testing.assert_close(out, torch.full_like(out, -0.1), rtol=0, atol=1e-7)


def test_local_refuses_padding_darknet_would_misread():
    with pytest.raises(CfgError, match=r"test.cfg:\d+ \[local\] pad: pad=1 with size=5"):
        _net("[net]\nwidth=8\nheight=8\nchannels=1\n[local]\nfilters=2\nsize=5\npad=1\n")


def _crop_forward(img: np.ndarray, out_h: int, out_w: int, noadjust: bool) -> np.ndarray:
    """forward_crop_layer with state.train == 0: centre offsets, no flip, ``input*scale + trans``."""
    c, h, w = img.shape
    scale, trans = (1.0, 0.0) if noadjust else (2.0, -1.0)
    dh, dw = (h - out_h) // 2, (w - out_w) // 2
    flat = img.ravel()
    out = []
    for ch in range(c):
        for i in range(out_h):
            for j in range(out_w):
                out.append(flat[(j + dw) + w * ((i + dh) + h * ch)] * scale + trans)
    return np.array(out).reshape(c, out_h, out_w)


@pytest.mark.parametrize("noadjust", [0, 1])
@pytest.mark.parametrize("crop", [(5, 4), (6, 7), (3, 2)])
def test_crop_matches_darknet_loops(crop, noadjust):
    crop_h, crop_w = crop
    net = _net(f"[net]\nwidth=7\nheight=6\nchannels=3\n[crop]\ncrop_height={crop_h}\ncrop_width={crop_w}\n"
               f"noadjust={noadjust}\nflip=1\n")
    x = torch.rand(1, 3, 6, 7)
    out = _layers(net, x)[0]
    np.testing.assert_allclose(out[0].numpy(), _crop_forward(x[0].numpy(), crop_h, crop_w, bool(noadjust)),
                               rtol=0, atol=1e-7)
    assert net.layer_infos[0].out_shape == (3, crop_h, crop_w)


def test_crop_larger_than_input_is_refused():
    with pytest.raises(CfgError, match=r"\[crop\] crop_width: a 9x4 crop does not fit the 7x6 input"):
        _net("[net]\nwidth=7\nheight=6\nchannels=3\n[crop]\ncrop_height=4\ncrop_width=9\n")


def test_cost_is_skipped_so_the_network_output_is_the_softmax():
    """get_network_output skips COST layers: a classifier's output is its softmax."""
    net = _net("[net]\nwidth=4\nheight=4\nchannels=3\n[convolutional]\nfilters=5\nsize=1\nactivation=linear\n"
               "[avgpool]\n[softmax]\ngroups=1\n[cost]\ntype=sse\n")
    x = torch.rand(2, 3, 4, 4)
    layers = _layers(net, x)
    with torch.no_grad():
        out = net(x)
    assert out.shape == (2, 5)
    torch.testing.assert_close(out, torch.softmax(layers[1].flatten(1), dim=1), rtol=0, atol=1e-7)
    torch.testing.assert_close(out.sum(dim=1), torch.ones(2), rtol=0, atol=1e-6)


def _detection_forward(values: np.ndarray, side: int, num: int, classes: int, coords: int) -> np.ndarray:
    """forward_detection_layer with softmax=1: softmax_array per cell's classes, LOGISTIC on the rest."""
    out = values.astype(np.float64).copy()
    cells = side * side
    for i in range(cells):
        chunk = out[i * classes: (i + 1) * classes]
        largest = chunk.max()
        e = np.array([math.exp(v - largest) for v in chunk])
        out[i * classes: (i + 1) * classes] = e / e.sum()
    for i in range(cells * classes, cells * (classes + num * (1 + coords))):
        out[i] = 1.0 / (1.0 + math.exp(-out[i]))
    return out


def _detection_boxes(p: np.ndarray, side: int, num: int, classes: int, sqrt: bool, w: int, h: int) -> np.ndarray:
    """get_detection_detections: box, scale and scale*class probability per (cell, box), before the threshold."""
    rows = []
    for i in range(side * side):
        row, col = i // side, i % side
        for n in range(num):
            scale = p[side * side * classes + i * num + n]
            box_index = side * side * (classes + num) + (i * num + n) * 4
            bx = (p[box_index + 0] + col) / side * w
            by = (p[box_index + 1] + row) / side * h
            bw = p[box_index + 2] ** (2 if sqrt else 1) * w
            bh = p[box_index + 3] ** (2 if sqrt else 1) * h
            rows.append([bx, by, bw, bh, scale] + [scale * p[i * classes + j] for j in range(classes)])
    return np.array(rows)


YOLOV1_MINI = """[net]
width=8
height=8
channels=3
[local]
filters=2
size=3
stride=2
pad=1
activation=leaky
[dropout]
probability=.5
[connected]
output={outputs}
activation=linear
[detection]
classes=3
coords=4
rescore=1
side=2
num=2
softmax={softmax}
sqrt={sqrt}
"""


@pytest.mark.parametrize("softmax,sqrt", [(1, 1), (0, 0)])
def test_detection_matches_darknet_loops(softmax, sqrt):
    net = _net(YOLOV1_MINI.format(outputs=2 * 2 * (5 * 2 + 3), softmax=softmax, sqrt=sqrt))
    torch.manual_seed(1)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.5)
    x = torch.rand(2, 3, 8, 8)
    layers = _layers(net, x)
    head = net.module_list[3]
    boxes = head.boxes(layers[3], (8, 8))
    for b in range(2):
        given = layers[2][b].double().numpy().ravel()
        expected = _detection_forward(given, 2, 2, 3, 4) if softmax else given
        np.testing.assert_allclose(layers[3][b].double().numpy().ravel(), expected, rtol=0, atol=1e-6)
        np.testing.assert_allclose(boxes[b].double().numpy(), _detection_boxes(expected, 2, 2, 3, bool(sqrt), 8, 8),
                                   rtol=0, atol=1e-5)


def test_detect_names_the_undecoded_detection_layer():
    with pytest.raises(CfgError, match=r"YOLOv1's \[detection\] layer is not decoded by detect"):
        Predictor(_net(YOLOV1_MINI.format(outputs=52, softmax=0, sqrt=0)))


def test_detection_checks_its_input_size():
    with pytest.raises(CfgError, match=r"\[detection\]: the layer before outputs 50 values but side=2, num=2, "
                                       r"classes=3, coords=4 need .* = 52"):
        _net(YOLOV1_MINI.format(outputs=50, softmax=0, sqrt=0))


def test_local_connected_weights_round_trip_byte_identical(tmp_path):
    """Darknet's order: [local] biases (filters x locations) then weights (locations x filters x c*size*size)."""
    net = _net(YOLOV1_MINI.format(outputs=52, softmax=1, sqrt=1))
    local = net.module_list[0]
    assert local.bias.numel() == 2 * 4 * 4 and local.weight.numel() == 16 * 2 * 3 * 3 * 3
    values = np.arange(1, 1 + 2 * 16 + 16 * 2 * 27 + 52 + 52 * 32, dtype="<f4")
    header = np.array([0, 2, 5], "<i4").tobytes() + np.array([64], "<u8").tobytes()
    src = tmp_path / "v1.weights"
    src.write_bytes(header + values.tobytes())
    net.load_darknet_weights(src)
    assert local.bias[0, 0].item() == 1 and local.bias[1, 15].item() == 32   # biases come first, filter-major
    assert local.weight[0, 0, 0].item() == 33 and local.weight[15, 1, 26].item() == 32 + 16 * 2 * 27
    out = tmp_path / "out.weights"
    net.save_darknet_weights(out)
    assert out.read_bytes() == src.read_bytes()
    (tmp_path / "short.weights").write_bytes(header + values[:-1].tobytes())
    with pytest.raises(WeightsError, match=r"ends inside layer 2 \(test.cfg:\d+ \[connected\]\)"):
        net.load_darknet_weights(tmp_path / "short.weights")


def test_contrastive_passes_detections_through():
    text = ("[net]\nwidth=8\nheight=8\nchannels=3\n[convolutional]\nfilters=7\nsize=1\nactivation=linear\n"
            "[yolo]\nmask=0\nanchors=2,3\nnum=1\nclasses=2\n[route]\nlayers=-2\n[contrastive]\nclasses=1\n"
            "yolo_layer={}\n")
    net = _net(text.format(-2))
    x = torch.rand(1, 3, 8, 8)
    layers = _layers(net, x)
    torch.testing.assert_close(layers[3], layers[2], rtol=0, atol=0)
    with torch.no_grad():
        assert net(x).shape == (1, 64, 7)
    with pytest.raises(CfgError, match=r"\[contrastive\] yolo_layer: yolo_layer= must point to a \[yolo\] layer"):
        _net(text.format(-1))


@pytest.mark.parametrize("section,reason", [("[lstm]\noutput=4", "lstm"), ("[rnn]\noutput=4", "rnn"),
                                            ("[gru]\noutput=4", "gru"), ("[crnn]\noutput=4", "crnn"),
                                            ("[conv_lstm]\noutput=4", "conv_lstm"), ("[lrn]", "lrn"),
                                            ("[implicit]", "implicit")])
def test_unsupported_sections_are_named_refusals(section, reason):
    with pytest.raises(UnsupportedCfgError, match=rf"test.cfg:5 \[{reason}\]: Darknet layer \[{reason}\] is not "
                                                  rf"supported by darknet_torch: ") as caught:
        _net(f"[net]\nwidth=8\nheight=8\nchannels=3\n{section}\n")
    assert caught.value.reason == reason


@pytest.mark.parametrize("body,reason", [
    ("[convolutional]\nfilters=4\nxnor=1", "xnor"),
    ("[convolutional]\nfilters=4\nbinary=1", "binary"),
    ("[convolutional]\nfilters=4\nsize=1\n[softmax]\ntree=data/9k.tree", "tree"),
    ("[convolutional]\nfilters=7\nsize=1\n[yolo]\nmask=1\nnum=1\nclasses=2\nanchors=1,2,3,4", "mask"),
])
def test_unsupported_keys_are_named_refusals(body, reason):
    with pytest.raises(UnsupportedCfgError) as caught:
        _net(f"[net]\nwidth=8\nheight=8\nchannels=3\n{body}\n")
    assert caught.value.reason == reason


SHARED_CFG = """[net]
width=12
height=12
channels=3
[convolutional]
filters=4
size=3
pad=1
activation=leaky
[convolutional]
batch_normalize=1
filters=4
size=3
pad=1
activation=leaky
[route]
layers=0
[convolutional]
share_index={share}
dilation=2
batch_normalize=1
filters=4
size=3
pad=1
activation=leaky
"""


def test_share_index_reuses_the_parameters_with_its_own_dilation(tmp_path):
    """TridentNet (resnet152_trident.cfg): a conv with share_index uses that layer's arrays, stores no weights."""
    net = _net(SHARED_CFG.format(share=1))
    source, shared = net.module_list[1], net.module_list[3]
    assert shared.conv.weight is source.conv.weight and shared.bn is source.bn
    torch.manual_seed(2)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_()
        source.bn.running_var.uniform_(0.5, 2)
    x = torch.rand(1, 3, 12, 12)
    layers = _layers(net, x)
    bn = source.bn
    expected = torch.nn.functional.conv2d(layers[0], source.conv.weight, None, 1, 2, 2)
    expected = (expected - bn.running_mean[:, None, None]) / torch.sqrt(bn.running_var[:, None, None] + 1e-5) \
        * bn.weight[:, None, None] + bn.bias[:, None, None]
    torch.testing.assert_close(layers[3], torch.nn.functional.leaky_relu(expected, 0.1), rtol=0, atol=1e-5)
    path = tmp_path / "shared.weights"
    net.save_darknet_weights(path)
    assert path.stat().st_size == 20 + 4 * ((4 + 4 * 27) + (4 * 4 + 4 * 36))  # layer 3 stores nothing
    again = _net(SHARED_CFG.format(share=-2)).load_darknet_weights(path)
    torch.testing.assert_close(_layers(again.eval(), x)[3], layers[3], rtol=0, atol=0)
    with pytest.raises(CfgError, match=r"\[convolutional\] share_index: share_index=2 must point to a "
                                       r"\[convolutional\]"):
        _net(SHARED_CFG.format(share=2))
    with pytest.raises(CfgError, match=r"share_index=0: layer 0 has filters/size/channels/batch_normalize"):
        _net(SHARED_CFG.format(share=0))
