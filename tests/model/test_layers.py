"""Layers the goldens do not cover, checked against Darknet's formulas on small hand-made inputs."""
from __future__ import annotations

import math

import pytest
import torch

from darknet_torch.model.activations import ACTIVATIONS
from darknet_torch.model.layers.pooling import LocalAvgPool, MaxPool, MaxPoolDepth
from darknet_torch.model.layers.reshape import Reorg3d, ReorgOld, Upsample
from darknet_torch.model.layers.routing import Route, Shortcut
from darknet_torch.model.layers.simple import Softmax

# (name, x, expected) from activations.h, evaluated by hand.
ACTIVATION_POINTS = [
    ("linear", -2.0, -2.0), ("logistic", 0.0, 0.5), ("loggy", 0.0, 0.0), ("relu", -1.0, 0.0), ("relu6", 7.0, 6.0),
    ("elu", -1.0, math.exp(-1) - 1), ("selu", 1.0, 1.0507), ("selu", -1.0, 1.0507 * 1.6732 * (math.exp(-1) - 1)),
    ("gelu", 1.0, 0.5 * (1 + math.tanh(0.797885 + 0.035677))), ("relie", -2.0, -0.02), ("ramp", -1.0, -0.1),
    ("ramp", 2.0, 2.2), ("leaky", -2.0, -0.2), ("revleaky", -2.0, -0.2), ("tanh", 0.5, math.tanh(0.5)),
    ("plse", -5.0, -0.01), ("plse", 5.0, 1.01), ("plse", 2.0, 0.75), ("stair", 3.5, 0.5 + 1.0), ("stair", -3.5, -2.0), ("stair", -2.5, 0.5 - 2.0),
    ("stair", 2.5, 1.0), ("hardtan", -3.0, -1.0), ("lhtan", -1.0, -0.001), ("lhtan", 2.0, 1.001),
    ("mish", 1.0, math.tanh(math.log1p(math.e))), ("mish", 25.0, 25.0 * math.tanh(25.0)), ("hard_mish", -1.0, -0.5),
    ("hard_mish", -3.0, 0.0), ("swish", 1.0, 1 / (1 + math.exp(-1))),
]


@pytest.mark.parametrize("name,x,expected", ACTIVATION_POINTS)
def test_activation_values(name, x, expected):
    assert ACTIVATIONS[name](torch.tensor([x], dtype=torch.float64)).item() == pytest.approx(expected, abs=1e-6)


def test_normalize_channels_activations():
    x = torch.tensor([1.0, -1.0, 3.0]).reshape(1, 3, 1, 1)
    assert ACTIVATIONS["normalize_channels"](x).flatten().tolist() == pytest.approx([1 / 4.0001, 0, 3 / 4.0001])
    e = torch.exp(x.flatten())
    soft = ACTIVATIONS["normalize_channels_softmax"](x).flatten()
    assert soft.tolist() == pytest.approx((e / (e.sum() + 1e-4)).tolist())
    shifted = torch.exp(x.flatten() - 3)
    maxval = ACTIVATIONS["normalize_channels_softmax_maxval"](x).flatten()
    assert maxval.tolist() == pytest.approx((shifted / (shifted.sum() + 1e-4)).tolist())


def test_maxpool_size2_stride1_pads_right_bottom_with_minus_inf():
    x = -torch.arange(9.0).reshape(1, 1, 3, 3)  # all values <= 0: zero padding would show up
    out = MaxPool(2, (1, 1), padding=1)(x)
    assert out.shape == (1, 1, 3, 3)
    assert out[0, 0].tolist() == [[0, -1, -2], [-3, -4, -5], [-6, -7, -8]]


def test_maxpool_odd_size_rounds_up():
    x = torch.arange(9.0).reshape(1, 1, 3, 3)
    assert MaxPool(2, (2, 2), padding=1)(x)[0, 0].tolist() == [[4, 5], [7, 8]]


@pytest.mark.parametrize("size, stride, padding", [(2, (2, 2), 0), (2, (2, 2), 1), (2, (1, 1), 1), (3, (2, 2), 2),
                                                   (5, (1, 1), 4), (13, (1, 1), 12), (3, (1, 2), 2), (1, (2, 2), 0)])
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_maxpool_inference_path_equals_torch_max_pool2d(size, stride, padding, layout, dtype):
    # Inference takes the separable form; the reference is torch's own pooling kernel on the same -inf padded
    # input.  Small integers make ties common; a NaN must come out where a window reads it.
    torch.manual_seed(0)
    x = torch.randint(-3, 4, (2, 5, 17, 14)).to(dtype)
    x[1, 2, 4, 6] = float("nan")
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    pool = MaxPool(size, stride, padding)
    before, after = padding // 2, padding - padding // 2
    expected = torch.nn.functional.max_pool2d(
        torch.nn.functional.pad(x, (before, after, before, after), value=float("-inf")), size, stride)
    with torch.inference_mode():
        out = pool(x)
    assert out.dtype == dtype and out.shape == expected.shape
    assert torch.equal(out.isnan(), expected.isnan()) and out.isnan().any()
    assert torch.equal(out.nan_to_num(), expected.nan_to_num())


def test_maxpool_training_gradient_goes_to_one_tap_of_a_tie():
    # Darknet's backward routes each output's gradient to the single arg-max tap; so training keeps max_pool2d.
    x = torch.ones(1, 1, 2, 2, requires_grad=True)
    MaxPool(2, (2, 2), 0)(x).sum().backward()
    assert sorted(x.grad.flatten().tolist()) == [0.0, 0.0, 0.0, 1.0]


def test_maxpool_depth_takes_every_out_c_th_channel():
    x = torch.tensor([1.0, 5.0, 3.0, 2.0, 9.0, 0.0]).reshape(1, 6, 1, 1)
    assert MaxPoolDepth(2)(x).flatten().tolist() == [9.0, 5.0]  # channels {0,2,4} and {1,3,5}


def test_local_avgpool_averages_only_inside_taps():
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 1, 2, 2)
    out = LocalAvgPool(3, (1, 1), padding=2)(x)
    assert out[0, 0].tolist() == [[2.5, 2.5], [2.5, 2.5]]


def test_upsample_scale_and_negative_stride():
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 1, 2, 2)
    assert Upsample(2, 0.5)(x)[0, 0, 0].tolist() == [0.5, 0.5, 1.0, 1.0]
    assert Upsample(-2, 1.0)(x).flatten().tolist() == [10.0]


def test_reorg3d_is_space_to_depth_in_darknet_channel_order():
    x = torch.arange(2 * 4 * 4.0).reshape(1, 2, 4, 4)
    out = Reorg3d(2)(x)
    for dy in range(2):
        for dx in range(2):
            for c in range(2):
                k = (dy * 2 + dx) * 2 + c
                assert torch.equal(out[0, k], x[0, c, dy::2, dx::2])


def test_old_reorg_follows_darknets_flat_formula():
    """golden/README.md 6.4: X = input viewed as [c/s^2][h*s][w*s]; T[k][j][i] = X[k % (c/s^2)]
    [j*s + (k/(c/s^2))/s][i*s + (k/(c/s^2))%s]; output = flat T read as [c*s^2][h/s][w/s]."""
    c, h, w, s = 8, 4, 6, 2
    x = torch.arange(c * h * w, dtype=torch.float32).reshape(1, c, h, w)
    groups = c // (s * s)
    X = x.flatten().reshape(groups, h * s, w * s)
    T = torch.empty(c, h, w)
    for k in range(c):
        off = k // groups
        for j in range(h):
            for i in range(w):
                T[k, j, i] = X[k % groups, j * s + off // s, i * s + off % s]
    assert torch.equal(ReorgOld(s)(x), T.reshape(1, c * s * s, h // s, w // s))


def test_route_groups_take_the_chunk_of_each_input():
    a = torch.arange(4.0).reshape(1, 4, 1, 1)
    b = torch.arange(10.0, 14.0).reshape(1, 4, 1, 1)
    out = Route((0, 1), groups=2, group_id=1)(a, [a, b])
    assert out.flatten().tolist() == [2.0, 3.0, 12.0, 13.0]


def test_partial_residual_adds_the_flat_prefix():
    x = torch.ones(1, 2, 2, 2)
    wider = torch.arange(16.0).reshape(1, 4, 2, 2)
    out = Shortcut((0,), "linear")(x, [wider])
    assert out.flatten().tolist() == [1.0 + v for v in range(8)]
    narrower = torch.full((1, 1, 2, 2), 5.0)
    out = Shortcut((0,), "linear")(x, [narrower])
    assert out.flatten().tolist() == [6.0] * 4 + [1.0] * 4


def test_weighted_shortcut_softmax_per_channel():
    """out = w0*x + w1*from with weights normalised by exp(w - max) / (1e-4 + sum exp), per channel."""
    layer = Shortcut((0,), "linear", "per_channel", "softmax", channels=2)
    with torch.no_grad():
        layer.weights.copy_(torch.tensor([[0.0, 1.0], [1.0, 1.0]]))
    x = torch.full((1, 2, 1, 1), 2.0)
    ref = torch.full((1, 2, 1, 1), 10.0)
    out = layer(x, [ref]).flatten()
    e0 = [math.exp(-1), 1.0]
    e1 = [1.0, 1.0]
    expected = [(e0[c] * 2 + e1[c] * 10) / (1e-4 + e0[c] + e1[c]) for c in range(2)]
    assert out.tolist() == pytest.approx(expected, rel=1e-6)


def test_weighted_shortcut_relu_per_feature():
    layer = Shortcut((0,), "linear", "per_feature", "relu", channels=3)
    with torch.no_grad():
        layer.weights.copy_(torch.tensor([[-1.0], [2.0]]))
    out = layer(torch.ones(1, 3, 1, 1), [torch.full((1, 3, 1, 1), 3.0)])
    assert out.flatten().tolist() == pytest.approx([3.0 * 2 / (2 + 1e-4)] * 3, rel=1e-6)


def test_softmax_spatial_and_grouped():
    x = torch.tensor([0.0, 1.0, 2.0, 3.0]).reshape(1, 4, 1, 1)
    grouped = Softmax(groups=2, temperature=1.0, spatial=False)(x).flatten()
    first = torch.softmax(torch.tensor([0.0, 1.0]), 0)
    assert grouped.tolist() == pytest.approx(first.tolist() * 2)
    spatial = Softmax(groups=1, temperature=2.0, spatial=True)(x).flatten()
    assert spatial.tolist() == pytest.approx(torch.softmax(x.flatten() / 2, 0).tolist())
