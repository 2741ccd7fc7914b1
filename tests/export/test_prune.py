"""Network slimming: the surgery is exact (channels switched off by hand vanish without changing the outputs), tied
channels go together, the written cfg differs from its source only in ``filters=`` values of known keys, and the
written weights load strictly and reproduce the in-memory pruned network."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from darknet_torch import Darknet
from darknet_torch.cli.main import main
from darknet_torch.config import parse_cfg_text
from darknet_torch.config.sections import ALIASES, COMMON_LAYER_KEYS, SCHEMAS
from darknet_torch.errors import DarknetError
from darknet_torch.export.prune import (PruningPlan, apply_pruning, channel_graph, network_cost, plan_pruning,
                                        prunable_bn_layers, save_pruned)
from darknet_torch.model.layers.conv import ConvBlock
from darknet_torch.train.sparsity import bn_l1_subgradient
from tests.golden import GOLDEN, load_run

REPO = Path(__file__).resolve().parents[2]
REAL_CFG = REPO / "cfg" / "yolov3-tiny.cfg"
MINI = GOLDEN / "mini"
# shortcuts (yolov3), route groups (yolov4-tiny), depthwise convs (enet-coco), partial shortcuts (yolov3-tiny-prn),
# sam/reorg3d/scale_channels (yolov4-sam-...), many concatenations and maxpools (yolov7-tiny)
STRUCTURES = ["yolov3-tiny", "yolov3", "yolov4-tiny", "enet-coco", "yolov3-tiny-prn",
              "yolov4-sam-mish-csp-reorg-bfm", "yolov7-tiny"]

# A hand-made net: a shortcut tying convs 0 and 1, a grouped route (second half of conv 4), an upsample, a route
# concatenating upsampled conv 6 with the shortcut at offset 4, and only 1x1 consumers of prunable channels, so the
# folding of removed channels' constants is exact everywhere.
HAND_CFG = """[net]
width=32
height=32
channels=3

# 0
[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
activation=leaky

# 1
[convolutional]
batch_normalize=1
filters=8
size=1
stride=1
pad=1
activation=leaky

# 2
[shortcut]
from=-2
activation=linear

# 3
[maxpool]
size=2
stride=2

# 4
[convolutional]
batch_normalize=1
filters=8
size=1
stride=1
pad=1
activation=mish

# 5
[route]
layers=-1
groups=2
group_id=1

# 6
[convolutional]
batch_normalize=1
filters=4
size=1
stride=1
pad=1
activation=leaky

# 7
[upsample]
stride=2

# 8
[route]
layers=-1,2

# 9
[convolutional]
batch_normalize=1
filters=6
size=1
stride=1
pad=1
activation=swish

# 10
[convolutional]
filters=18
size=1
stride=1
pad=1
activation=linear

# 11
[yolo]
mask=0,1,2
anchors=4,5,8,9,12,14
classes=1
num=3
"""
# |gamma| = 1 except these (layer: {channel: gamma}); threshold 0.1 removes the small ones, subject to the rules.
HAND_GAMMAS = {0: {1: 0.01, 3: 0.02}, 1: {3: -0.05},  # channel 1 stays: conv 1 keeps it (union rule)
               4: {0: 0.03, 1: 0.02, 5: 0.04},        # chunks {0..3},{4..7}: 2 vs 3 removed -> keep ch 0 too
               6: {2: 0.0}, 9: {0: -0.01}}
HAND_KEEP = {0: (0, 1, 2, 4, 5, 6, 7), 1: (0, 1, 2, 4, 5, 6, 7), 4: (0, 2, 3, 4, 6, 7), 6: (0, 1, 3),
             9: (1, 2, 3, 4, 5)}


def _hand_model(tmp_path: Path) -> Darknet:
    cfg = tmp_path / "hand.cfg"
    cfg.write_text(HAND_CFG)
    model = Darknet(cfg)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for i, module in enumerate(model.module_list):
            if isinstance(module, ConvBlock):
                for tensor in module.state_dict().values():
                    if tensor.is_floating_point():
                        tensor.copy_(torch.rand(tensor.shape, generator=generator) - 0.5)
                if module.bn is not None:
                    module.bn.running_var.add_(1.0)
                    module.bn.weight.fill_(1.0)
                    for channel, gamma in HAND_GAMMAS.get(i, {}).items():
                        module.bn.weight[channel] = gamma
    return model.eval()


def _switch_off(model: Darknet, plan: PruningPlan, beta: bool) -> None:
    """Set gamma (and beta) of every channel the plan removes to 0: those channels then carry a constant."""
    with torch.no_grad():
        for i, keep in plan.keep.items():
            removed = torch.ones(plan.original[i], dtype=torch.bool)
            removed[list(keep)] = False
            model.module_list[i].bn.weight[removed] = 0.0
            if beta:
                model.module_list[i].bn.bias[removed] = 0.0


def _outputs(model: Darknet, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(x)


def _mini(name: str) -> tuple[Darknet, torch.Tensor, Path, Path]:
    run = load_run(MINI / name)
    return Darknet(run.cfg).load_darknet_weights(run.weights).eval(), run.input(), run.cfg, run.weights


@pytest.fixture(scope="module")
def real_model(real_weights) -> Darknet:
    return Darknet(REAL_CFG).load_darknet_weights(real_weights).eval()


# ---------------------------------------------------------------------------------------------------- (a) identity
def test_ratio_zero_rewrites_nothing(golden_dir, real_weights, real_model, tmp_path):
    mini, _, mini_cfg, mini_weights = _mini("yolov3-tiny")
    for model, cfg, weights in ((mini, mini_cfg, mini_weights), (real_model, REAL_CFG, real_weights)):
        plan = plan_pruning(model, ratio=0.0)
        assert plan.removed == 0 and plan.changed_layers == []
        text, pruned = apply_pruning(model, plan)
        cfg_out, weights_out = save_pruned(text, pruned, tmp_path / cfg.stem)
        assert cfg_out.read_bytes() == cfg.read_bytes()
        assert weights_out.read_bytes() == weights.read_bytes()
        x = torch.rand(1, 3, *model.input_size, generator=torch.Generator().manual_seed(1))
        assert torch.equal(_outputs(pruned, x), _outputs(model, x))


# ---------------------------------------------------------------------------------------------------- (b) exactness
@pytest.mark.parametrize("name", STRUCTURES)
def test_removing_switched_off_channels_keeps_the_outputs(name, golden_dir):
    """Channels with gamma = beta = 0 output act(0) = 0 everywhere: removing them must not change the network."""
    model, x, _, _ = _mini(name)
    plan = plan_pruning(model, ratio=0.5, per_layer_min=1)
    assert plan.removed >= 0.05 * sum(plan.original.values())
    _switch_off(model, plan, beta=True)
    _, pruned = apply_pruning(model, plan)
    assert network_cost(pruned).params < network_cost(model).params
    torch.testing.assert_close(_outputs(pruned, x), _outputs(model, x), rtol=1e-5, atol=1e-5)


def test_real_yolov3_tiny_switched_off_channels(real_model, golden_dir):
    model = Darknet(REAL_CFG)
    model.load_state_dict(real_model.state_dict())
    model.header = real_model.header
    plan = plan_pruning(model, ratio=0.5)
    assert plan.removed > 0.45 * sum(plan.original.values())
    _switch_off(model, plan, beta=True)
    _, pruned = apply_pruning(model, plan)
    x = load_run(GOLDEN / "real" / "dog_resize").input()
    torch.testing.assert_close(_outputs(pruned, x), _outputs(model.eval(), x), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------------- (c) structure
def test_hand_cfg_ties_shortcut_channels_and_equalises_route_chunks(tmp_path):
    model = _hand_model(tmp_path)
    plan = plan_pruning(model, threshold=0.1, per_layer_min=1)
    assert plan.keep == HAND_KEEP
    assert plan.frozen == {} and plan.threshold == 0.1
    text, pruned = apply_pruning(model, plan)
    filters = [int(line.split("=")[1]) for line in text.splitlines() if line.startswith("filters=")]
    assert filters == [7, 7, 6, 3, 5, 18]
    assert [info.out_shape[0] for info in pruned.layer_infos][:10] == [7, 7, 7, 7, 6, 3, 3, 3, 10, 5]


def test_hand_cfg_folds_removed_constants_exactly(tmp_path):
    """gamma = 0 but beta != 0: each removed channel carries act(beta) (through the shortcut, maxpool, grouped route,
    upsample and concatenation); folded into the 1x1 consumers' running_mean / bias the outputs stay the same."""
    model = _hand_model(tmp_path)
    plan = plan_pruning(model, threshold=0.1, per_layer_min=1)
    _switch_off(model, plan, beta=False)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    expected = _outputs(model, x)
    _, folded = apply_pruning(model, plan)
    torch.testing.assert_close(_outputs(folded, x), expected, rtol=1e-5, atol=1e-5)
    _, unfolded = apply_pruning(model, plan, fold=False)
    assert (_outputs(unfolded, x) - expected).abs().max() > 1e-2  # the constants matter


def test_plans_breaking_the_rules_are_refused(tmp_path):
    model = _hand_model(tmp_path)
    good = plan_pruning(model, threshold=0.1, per_layer_min=1)

    def edited(**keep) -> PruningPlan:
        return PruningPlan({**good.keep, **{int(k[1:]): v for k, v in keep.items()}}, good.original, None, {})

    with pytest.raises(ValueError, match="tied"):
        apply_pruning(model, edited(l1=(0, 1, 2, 3, 4, 5, 6, 7)))
    with pytest.raises(ValueError, match="equal numbers"):
        apply_pruning(model, edited(l4=(2, 3, 4, 6, 7)))
    with pytest.raises(ValueError, match="not a prunable"):
        apply_pruning(model, edited(l10=tuple(range(17))))
    with pytest.raises(ValueError, match="exactly one"):
        plan_pruning(model)


def test_frozen_channels_are_reported_and_kept(golden_dir):
    model, _, _, _ = _mini("enet-coco")
    graph = channel_graph(model)
    grouped = [i for i, m in enumerate(model.module_list) if isinstance(m, ConvBlock) and m.conv.groups > 1]
    assert grouped and all(i not in graph.bn_convs for i in grouped)
    plan = plan_pruning(model, ratio=0.9, per_layer_min=1)
    for i in grouped:  # the conv feeding a depthwise conv keeps every channel
        assert len(plan.keep[i - 1]) == plan.original[i - 1]
        assert "grouped convolution" in plan.frozen[i - 1]
    assert set(prunable_bn_layers(model)) < set(graph.bn_convs)


# ---------------------------------------------------------------------------------------------------- (d) files
@pytest.mark.parametrize("name", ["yolov3", "yolov4-tiny"])
def test_written_mini_files_load_strictly_and_match(name, golden_dir, tmp_path):
    model, x, cfg, _ = _mini(name)
    _check_written_files(model, cfg, x, tmp_path, ratio=0.4)


def test_written_real_files_load_strictly_and_match(real_model, golden_dir, tmp_path):
    x = load_run(GOLDEN / "real" / "dog_resize").input()
    _check_written_files(real_model, REAL_CFG, x, tmp_path, ratio=0.3)


def _check_written_files(model: Darknet, source_cfg: Path, x: torch.Tensor, tmp_path: Path, ratio: float) -> None:
    plan = plan_pruning(model, ratio=ratio)
    text, pruned = apply_pruning(model, plan)
    cfg_path, weights_path = save_pruned(text, pruned, tmp_path / "pruned")
    # only filters= values differ from the source, each on a pruned conv's line
    old_lines, new_lines = source_cfg.read_text().splitlines(), cfg_path.read_text().splitlines()
    assert len(old_lines) == len(new_lines)
    changed = [(a, b) for a, b in zip(old_lines, new_lines) if a != b]
    assert len(changed) == len(plan.changed_layers) > 0
    assert all(a.replace(" ", "").startswith("filters=") and b.replace(" ", "").startswith("filters=")
               for a, b in changed)
    # every key is one C Darknet's parser reads for that section
    for raw in parse_cfg_text(cfg_path.read_text(), str(cfg_path)):
        name = ALIASES.get(raw.name, raw.name)
        known = SCHEMAS[name] if name == "net" else {**SCHEMAS[name], **COMMON_LAYER_KEYS}
        assert set(raw.options) <= set(known), f"{raw.where()}: {set(raw.options) - set(known)}"
    # the weights fill the new cfg exactly and reproduce the in-memory network
    reloaded = Darknet(cfg_path).load_darknet_weights(weights_path)
    floats = sum(t.numel() for m in reloaded.module_list for t in getattr(m, "darknet_params", list)())
    assert weights_path.stat().st_size == len(model.header.to_bytes()) + 4 * floats
    assert reloaded.header == model.header
    assert torch.equal(_outputs(reloaded, x), _outputs(pruned, x))


# ---------------------------------------------------------------------------------------------------- planning rules
def test_global_ratio_removes_the_smallest_gammas_of_the_network(real_model, golden_dir):
    plan = plan_pruning(real_model, ratio=0.3, per_layer_min=1)
    layers = [i for i, m in enumerate(real_model.module_list) if isinstance(m, ConvBlock) and m.bn is not None]
    gammas = {i: real_model.module_list[i].bn.weight.detach().abs().double().numpy() for i in layers}
    pool = np.sort(np.concatenate(list(gammas.values())))
    k = int(0.3 * len(pool))
    assert plan.removed == k and plan.threshold == pool[k]
    assert plan.keep == {i: tuple(np.flatnonzero(gammas[i] >= pool[k])) for i in layers}


def test_per_layer_ratio_minimum_and_rounding(golden_dir):
    model, _, _, _ = _mini("yolov3-tiny")
    per_layer = plan_pruning(model, ratio=0.5, per_layer=True, per_layer_min=1)
    assert per_layer.threshold is None
    assert {i: len(k) for i, k in per_layer.keep.items()} == {i: n - n // 2 for i, n in per_layer.original.items()}
    rounded = plan_pruning(model, ratio=0.7, per_layer_min=4, round_to=8)
    for i, keep in rounded.keep.items():
        n = rounded.original[i]
        assert len(keep) == n or (len(keep) % 8 == 0 and len(keep) >= min(4, n)), (i, len(keep), n)
    assert rounded.removed > 0


def test_bn_l1_subgradient_adds_s_sign_gamma(tmp_path):
    model = _hand_model(tmp_path).train()
    model.forward_layers(torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)))[9].sum().backward()
    bns = {i: model.module_list[i].bn for i in HAND_KEEP}
    before = {i: bn.weight.grad.clone() for i, bn in bns.items()}
    bn_l1_subgradient(model, 0.5)
    for i, bn in bns.items():
        assert torch.equal(bn.weight.grad, before[i] + 0.5 * torch.sign(bn.weight.detach()))
    assert bns[6].weight.grad[2] == before[6][2]  # sign(0) = 0: a switched-off channel stays put
    bn_l1_subgradient(model, 1.0, layers=[0])
    assert torch.equal(bns[0].weight.grad, before[0] + 0.5 * torch.sign(bns[0].weight.detach())
                       + torch.sign(bns[0].weight.detach()))
    assert torch.equal(bns[1].weight.grad, before[1] + 0.5 * torch.sign(bns[1].weight.detach()))


# ---------------------------------------------------------------------------------------------------- CLI
def test_cli_writes_the_pair_and_prints_the_table(golden_dir, tmp_path, capsys):
    run = load_run(MINI / "yolov3-tiny")
    out = tmp_path / "slim"
    assert main(["prune", "--cfg", str(run.cfg), "--weights", str(run.weights), "--ratio", "0.5",
                 "--min-channels", "2", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "fewer" in printed and "no batch norm" in printed and str(out) in printed
    reloaded = Darknet(f"{out}.cfg").load_darknet_weights(f"{out}.weights")
    assert network_cost(reloaded).params < network_cost(Darknet(run.cfg)).params
    with pytest.raises(SystemExit) as exited:  # argparse's usage error
        main(["prune", "--cfg", str(run.cfg), "--weights", str(run.weights), "--ratio", "1.5", "--output", str(out)])
    assert exited.value.code == 2
    with pytest.raises(SystemExit) as exited:
        main(["prune", "--cfg", str(run.cfg), "--weights", str(run.weights), "--threshold", "nan", "--output",
              str(out)])
    assert exited.value.code == 2 and "--threshold: must be in [0, inf], got nan" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------- bad gammas
def test_nan_gamma_is_refused_naming_the_layer(tmp_path):
    """NaN compares false with any threshold: the channel (and with a NaN threshold whole layers) went silently."""
    model = _hand_model(tmp_path)
    with torch.no_grad():
        model.module_list[4].bn.weight[3] = float("nan")
    for how in ({"ratio": 0.3}, {"threshold": 0.5}, {"ratio": 0.5, "per_layer": True}):
        with pytest.raises(DarknetError, match=r"hand.cfg:\d+ \[convolutional\] \(layer 4\): 1 of 8 batch-norm scales "
                                               r"\(gamma\) are NaN or inf"):
            plan_pruning(model, **how)


@pytest.mark.parametrize("threshold", [float("nan"), float("inf")])
def test_non_finite_threshold_is_refused(tmp_path, threshold):
    with pytest.raises(ValueError, match="threshold must be a finite number"):
        plan_pruning(_hand_model(tmp_path), threshold=threshold)


def test_all_zero_layers_are_pruned_to_the_ratio_not_skipped(tmp_path):
    """With more zero gammas than the ratio removes, the threshold is 0 and ``gamma >= 0`` kept every channel: a
    ratio of 0.3 removed nothing.  Equal gammas are now taken in network order until the ratio is met."""
    model = _hand_model(tmp_path)
    with torch.no_grad():
        for i in (4, 6, 9):  # 18 zero gammas of 34; ratio 0.3 removes 10
            model.module_list[i].bn.weight.zero_()
    plan = plan_pruning(model, ratio=0.3, per_layer_min=1)
    assert plan.threshold == 0.0 and plan.removed >= 8  # layer 4's grouped-route chunks keep one channel each
    assert all(len(k) >= 1 for k in plan.keep.values()) and plan.keep[0] == tuple(range(8))
    per_layer = plan_pruning(model, ratio=0.5, per_layer=True, per_layer_min=1)
    assert (len(per_layer.keep[6]), len(per_layer.keep[9])) == (2, 3)



BN_CONV = "[convolutional]\nbatch_normalize=1\nfilters=16\nsize={size}\nstride=1\npad=1\nactivation=leaky\n"
SHARED = "[net]\nwidth=32\nheight=32\nchannels=3\n" + BN_CONV.format(size=3) + BN_CONV.format(size=1) \
    + BN_CONV.format(size=1) + "share_index=1\n[convolutional]\nsize=1\nfilters=18\nactivation=linear\n" \
    "[yolo]\nmask=0,1,2\nanchors=10,14,23,27,37,58\nclasses=1\nnum=3\n"


def test_convolutions_sharing_weights_keep_their_channels(tmp_path):
    """share_index: one kernel serves two layers, so neither they nor their inputs lose channels (pruning one alone
    made an internal cfg that did not build)."""
    cfg = tmp_path / "share.cfg"
    cfg.write_text(SHARED)
    model = Darknet(cfg).eval()
    gammas = torch.linspace(0.01, 1.0, 16)
    for index in (0, 1):
        model.module_list[index].bn.weight.data.copy_(gammas)
    plan = plan_pruning(model, ratio=0.4, per_layer_min=1)
    assert plan.keep == {0: tuple(range(16))} and "shares weights (share_index)" in plan.frozen[0]
    _, pruned = apply_pruning(model, plan)
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(pruned.eval()(x), model(x))
