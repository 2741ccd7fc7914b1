"""LrSchedule against Darknet's get_current_rate formulas, on points whose values are known by hand."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from darknet_torch.errors import CfgError
from darknet_torch.train.schedule import LrSchedule, lr_lambda, set_lr

# [net] of the official yolov3.cfg / yolov4.cfg (checked against the files below).
YOLOV3_NET = dict(learning_rate=0.001, burn_in=1000, max_batches=500200, policy="steps",
                  steps=(400000, 450000), scales=(0.1, 0.1))
YOLOV4_NET = dict(learning_rate=0.0013, burn_in=1000, max_batches=500500, policy="steps",
                  steps=(400000, 450000), scales=(0.1, 0.1))


def f32(x: float) -> float:
    return float(np.float32(x))


def test_defaults_are_parse_net_options_defaults():
    s = LrSchedule()
    assert (s.learning_rate, s.policy, s.burn_in, s.power, s.max_batches) == (0.001, "constant", 0, 4.0, 0)
    assert (s.step, s.scale, s.gamma, s.learning_rate_min, s.sgdr_mult) == (1, 1.0, 1.0, 0.00001, 2)
    assert LrSchedule(policy="sgdr", max_batches=700).batches_per_cycle == 700


@pytest.mark.parametrize("net", [YOLOV3_NET, YOLOV4_NET], ids=["yolov3", "yolov4"])
def test_yolo_schedules_burn_in_then_steps(net):
    s = LrSchedule(**net)
    lr = net["learning_rate"]
    assert s.rate(0) == 0.0
    assert s.rate(500) == f32(f32(lr) * 0.5 ** 4)  # burn-in 1000, power 4: lr * (500/1000)^4
    assert s.rate(250) == f32(f32(lr) * 0.25 ** 4)
    assert s.rate(1000) == f32(lr)  # burn-in over: steps policy, before the first step
    assert s.rate(399999) == f32(lr)
    assert s.rate(400000) == f32(np.float32(lr) * np.float32(0.1))
    assert s.rate(449999) == f32(np.float32(lr) * np.float32(0.1))
    tenth = np.float32(0.1)
    assert s.rate(450000) == f32(np.float32(np.float32(lr) * tenth) * tenth)
    assert s.rate(net["max_batches"]) == s.rate(450000)
    assert s.rate(450000) == pytest.approx(lr / 100, rel=1e-6)


@pytest.mark.parametrize("name, net", [("yolov3.cfg", YOLOV3_NET), ("yolov4.cfg", YOLOV4_NET)])
def test_hardcoded_net_values_match_official_cfg(official_cfg_dir: Path, name, net):
    options = {}
    for line in (official_cfg_dir / name).read_text().splitlines():
        line = line.split("#")[0].strip()
        if line.startswith("[") and options:
            break
        if "=" in line:
            key, value = (part.strip() for part in line.split("=", 1))
            options[key] = value
    assert float(options["learning_rate"]) == net["learning_rate"]
    assert int(options["burn_in"]) == net["burn_in"]
    assert int(options["max_batches"]) == net["max_batches"]
    assert options["policy"] == net["policy"]
    assert tuple(int(v) for v in options["steps"].split(",")) == net["steps"]
    assert tuple(float(v) for v in options["scales"].split(",")) == net["scales"]


def test_burn_in_applies_before_every_policy():
    for policy, extra in [("constant", {}), ("poly", {"max_batches": 100}), ("exp", {"gamma": 0.5})]:
        s = LrSchedule(learning_rate=0.01, burn_in=10, power=2, policy=policy, **extra)
        assert s.rate(5) == f32(f32(0.01) * 0.25)


def test_poly_power_4():
    s = LrSchedule(learning_rate=0.01, policy="poly", power=4, max_batches=1000)
    assert s.rate(0) == f32(0.01)
    assert s.rate(500) == f32(f32(0.01) * 0.0625)
    assert s.rate(750) == f32(f32(0.01) * 0.25 ** 4)
    assert s.rate(1000) == 0.0


def test_step_exp_sigmoid_constant():
    step = LrSchedule(learning_rate=0.1, policy="step", step=1000, scale=0.5)
    assert step.rate(999) == f32(0.1)
    assert step.rate(2500) == f32(f32(0.1) * 0.25)  # integer division: 2500 // 1000 = 2
    exp = LrSchedule(learning_rate=0.1, policy="exp", gamma=0.9)
    assert exp.rate(2) == pytest.approx(0.081, rel=1e-6)
    sig = LrSchedule(learning_rate=0.1, policy="sigmoid", gamma=0.01, step=1000)
    assert sig.rate(1000) == f32(f32(0.1) * 0.5)
    assert sig.rate(1100) == pytest.approx(0.1 / (1 + math.e), rel=1e-6)
    assert LrSchedule(learning_rate=0.02).rate(123456) == f32(0.02)


def test_sgdr_cycles_double():
    s = LrSchedule(learning_rate=0.1, learning_rate_min=0.001, policy="sgdr", sgdr_cycle=100, sgdr_mult=2)
    lr, lo = 0.1, 0.001
    assert s.rate(0) == pytest.approx(lr, rel=1e-6)
    assert s.rate(50) == pytest.approx(lo + 0.5 * (lr - lo), rel=1e-6)
    assert s.rate(100) == pytest.approx(lo, rel=1e-6)  # the loop restarts only *after* the cycle end
    assert s.rate(101) == pytest.approx(lo + 0.5 * (lr - lo) * (1 + math.cos(math.pi / 200)), rel=1e-6)
    assert s.rate(200) == pytest.approx(lo + 0.5 * (lr - lo), rel=1e-6)  # middle of the 200-long 2nd cycle
    assert s.rate(300) == pytest.approx(lo, rel=1e-6)
    assert s.rate(301) == pytest.approx(lo + 0.5 * (lr - lo) * (1 + math.cos(math.pi / 400)), rel=1e-6)


def test_random_policy_needs_and_follows_the_generator():
    s = LrSchedule(learning_rate=0.1, policy="random", power=1)
    with pytest.raises(ValueError, match="Generator"):
        s.rate(5)
    draws = [s.rate(5, np.random.default_rng(7)) for _ in range(2)]
    assert draws[0] == draws[1]
    u = np.float32(np.random.default_rng(7).random())
    assert draws[0] == f32(f32(0.1) * float(u))


def test_rates_are_c_floats():
    s = LrSchedule(**YOLOV4_NET)
    for b in (1, 333, 999, 1000, 420000, 460000):
        r = s.rate(b)
        assert np.float32(r) == r


@pytest.mark.parametrize("kwargs, message", [
    (dict(policy="cosine"), "unknown"),
    (dict(policy="steps", steps=(10,)), "steps= and scales="),
    (dict(policy="steps", steps=(10, 20), scales=(0.1,)), "only 1"),
    (dict(policy="poly"), "max_batches"),
    (dict(policy="sgdr"), "sgdr_cycle"),
    (dict(policy="step", step=0), "step=0"),
    (dict(burn_in=-1), "burn_in"),
])
def test_bad_settings_raise_cfg_error(kwargs, message):
    with pytest.raises(CfgError, match=message):
        LrSchedule(**kwargs)


def test_from_net_reads_typed_net_values():
    s = LrSchedule.from_net(dict(learning_rate=0.0013, burn_in=1000, policy="steps", steps=[400000, 450000],
                                scales=[0.1, 0.1], max_batches=500500, sgdr_cycle=None, momentum=0.949))
    assert s == LrSchedule(**YOLOV4_NET)


def test_lambda_lr_and_set_lr_follow_darknet_batch_num():
    s = LrSchedule(learning_rate=0.01, burn_in=4, power=1, policy="steps", steps=(6,), scales=(0.5,))
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=s.learning_rate)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(s))
    seen = []
    for _ in range(8):
        seen.append(optimizer.param_groups[0]["lr"])  # the lr this update uses
        optimizer.step()
        scheduler.step()
    expected = [s.rate(k) for k in range(1, 9)]
    assert seen == pytest.approx(expected, rel=1e-7)
    assert expected[:4] == [f32(f32(0.01) * k / 4) for k in range(1, 5)]

    groups = torch.optim.SGD([{"params": [param]}, {"params": [torch.nn.Parameter(torch.zeros(1))], "lr_scale": 0.1}],
                             lr=1.0)
    set_lr(groups, 0.02)
    assert [g["lr"] for g in groups.param_groups] == pytest.approx([0.02, 0.002])
