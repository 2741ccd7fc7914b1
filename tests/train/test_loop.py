"""The training loop's arithmetic against Darknet's update rules, written out naively here from the C code."""
from __future__ import annotations

import copy
import logging
from pathlib import Path

import pytest
import torch

from darknet_torch.errors import CfgError, DarknetError
from darknet_torch.model.darknet import Darknet
from darknet_torch.model.heads import YOLOLayer
from darknet_torch.train.checkpoint import CheckpointPaths
from darknet_torch.train.ema import DarknetEma
from darknet_torch.train.loop import DetectionLoss, LoopOptions, Trainer
from darknet_torch.train.optim import TrainSettings, build_optimizer, keys_not_applied, param_groups

QUIET = dict(save_every=10**6, save_last_every=10**6, progress=False)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def make_trainer(cfg: Path, tmp_path: Path, stream_factory, criterion=None, **loop) -> Trainer:
    torch.manual_seed(0)
    model = Darknet(cfg)
    settings = TrainSettings.from_net(model.hyperparams)
    return Trainer(model, settings, stream_factory(settings.mini_batch, settings.subdivisions),
                   CheckpointPaths(tmp_path / "backup", "tiny"), LoopOptions(**{**QUIET, **loop}),
                   criterion=criterion(model) if criterion else None)


def darknet_reference(model: Darknet, settings: TrainSettings, batches, iterations: int) -> Darknet:
    """network.c update_network + convolutional_layer.c update_convolutional_layer, one tensor at a time:
    ``weight_updates`` accumulates minus the gradient over the subdivisions, then
    ``v -= decay*batch*w`` (weights only), ``w += rate/batch * v``, ``v *= momentum``."""
    model = copy.deepcopy(model)
    params = [p for p in model.parameters() if p.requires_grad]
    updates = [torch.zeros_like(p) for p in params]
    stream = iter(batches(0))
    for k in range(1, iterations + 1):
        rate = settings.schedule.rate(k)
        for _ in range(settings.subdivisions):
            images, _ = next(stream)
            loss = sum(0.5 * (out ** 2).sum() for out in model.head_outputs(images))
            for v, g in zip(updates, torch.autograd.grad(loss, params)):
                v -= g
        with torch.no_grad():
            for p, v in zip(params, updates):
                if p.dim() > 1:  # l.weights; biases and BN scales are never decayed
                    v -= settings.decay * settings.batch * p
                p += rate / settings.batch * v
                v *= settings.momentum
    return model


@pytest.mark.parametrize("batch_normalize, channels_last", [(True, False), (False, False), (True, True)])
def test_update_matches_darknets_sgd(cfg_factory, stream_factory, squared_output_loss, tmp_path, batch_normalize,
                                     channels_last):
    net = {"batch": 4, "subdivisions": 2, "max_batches": 4, "learning_rate": 0.002, "burn_in": 2,
           "momentum": 0.9, "decay": 0.05, "policy": "steps", "steps": "3", "scales": "0.5"}
    trainer = make_trainer(cfg_factory(net=net, batch_normalize=batch_normalize), tmp_path, stream_factory,
                           squared_output_loss, channels_last=channels_last)
    convs = [m.weight for m in trainer.model.modules() if isinstance(m, torch.nn.Conv2d)]
    layout = torch.channels_last if channels_last else torch.contiguous_format
    assert all(w.is_contiguous(memory_format=layout) for w in convs)
    expected = darknet_reference(trainer.model, trainer.settings, trainer.batches, 4)
    trainer.run(stop_at=4)
    assert trainer.iteration == 4
    assert trainer.rate == pytest.approx(0.001)  # steps=3 scales=.5, burn-in over
    for (name, got), want in zip(trainer.model.state_dict().items(), expected.state_dict().values()):
        assert torch.allclose(got.float(), want.float(), rtol=1e-5, atol=1e-7), name
    moved = [(a - b).abs().max().item() for a, b in zip(trainer.model.parameters(),
                                                         Darknet(trainer.model.cfg_path).parameters())]
    assert max(moved) > 1e-3  # the update did something


def test_cpu_amp_trains_the_body_in_bfloat16_and_the_loss_in_float32(tiny_cfg, tmp_path):
    """--amp on the CPU: bfloat16 autocast without a GradScaler; heads and loss stay float32; the first iteration's
    loss and gradients stay close to float32 training's (same weights, same batch)."""
    images = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    targets = torch.tensor([[0, 1, 0.5, 0.5, 0.3, 0.4], [1, 2, 0.25, 0.7, 0.2, 0.2], [3, 0, 0.6, 0.3, 0.4, 0.3]])

    def stream(start):
        while True:
            yield images, targets

    def one_iteration(amp: bool) -> tuple[Trainer, float, dict]:
        torch.manual_seed(0)
        model = Darknet(tiny_cfg)
        settings = TrainSettings.from_net(model.hyperparams)  # 2 mini-batches of 4
        trainer = Trainer(model, settings, lambda start: stream(start), CheckpointPaths(tmp_path / str(amp), "t"),
                          LoopOptions(**QUIET, amp=amp))
        dtypes = {}

        def record(name):
            def hook(module, inputs, output):
                dtypes.setdefault(name, output.dtype)
            return hook
        for name, module in model.named_modules():
            if isinstance(module, (torch.nn.Conv2d, YOLOLayer)):
                module.register_forward_hook(record(name))
        loss, _, _ = trainer._train_iteration(iter(trainer.batches(0)))
        return trainer, loss, dtypes

    fp32, fp32_loss, fp32_dtypes = one_iteration(False)
    bf16, bf16_loss, bf16_dtypes = one_iteration(True)
    assert not bf16.scaler.is_enabled()
    assert set(fp32_dtypes.values()) == {torch.float32}
    assert {dtype for name, dtype in bf16_dtypes.items() if "conv" in name} == {torch.bfloat16}
    assert [dtype for name, dtype in bf16_dtypes.items() if "conv" not in name] == [torch.float32]  # the head
    assert bf16_loss == pytest.approx(fp32_loss, rel=0.02)
    fp32_grads = dict(fp32.model.named_parameters())
    for name, param in bf16.model.named_parameters():  # the gradients of the update just taken
        want, got = fp32_grads[name].grad, param.grad
        assert got.dtype == torch.float32
        # bfloat16 keeps 8 significant bits; gradients summed over many positions with mixed signs lose most of
        # them (measured cosine 0.96..1.0 here, the layers next to the head 0.9999+)
        assert torch.nn.functional.cosine_similarity(got.flatten(), want.flatten(), 0) >= 0.95, name


def test_param_groups_carry_darknets_scales(cfg_factory):
    cfg = cfg_factory(net={"batch": 16, "subdivisions": 4, "decay": 0.0005})
    text = cfg.read_text().replace("filters=16\n", "filters=16\nlearning_rate=0.5\n", 1)
    cfg.write_text(text.replace("filters=32\n", "filters=32\nstopbackward=1\n", 1))
    model = Darknet(cfg)  # layers: 0 conv8, 1 max, 2 conv16 (lr 0.5), 3 max, 4 conv32 (stopbackward), ...
    settings = TrainSettings.from_net(model.hyperparams)
    groups = param_groups(model, settings, world_size=2)
    in_groups = {id(p) for g in groups for p in g["params"]}
    for index in (0, 2):
        assert not any(p.requires_grad or id(p) in in_groups for p in model.module_list[index].parameters())
    conv4 = model.module_list[4]
    assert id(conv4.conv.weight) in in_groups
    for group in groups:
        decayed = all(p.dim() > 1 for p in group["params"])
        assert all((p.dim() > 1) == decayed for p in group["params"])
        assert group["weight_decay"] == (0.0005 * 16 if decayed else 0.0)
        assert group["lr_scale"] == pytest.approx(2 / 16)  # world_size / batch, layer scale 1 (layer 2 is frozen)


def test_stopbackward_layer_gets_decay_only(cfg_factory, stream_factory, squared_output_loss, tmp_path):
    """network.c backward_network breaks *at* the stopbackward layer, yet update_network still updates it (train=1):
    with no gradient, one step is ``v = -decay*batch*w; w += rate/batch * v``, i.e. ``w * (1 - rate*decay)``;
    its batch-norm scales and biases (never decayed) stay put; the layers before it do not move either."""
    net = {"batch": 4, "subdivisions": 2, "max_batches": 2, "learning_rate": 0.01, "burn_in": 0, "decay": 0.05,
           "policy": "constant"}
    cfg = cfg_factory(net=net)
    cfg.write_text(cfg.read_text().replace("filters=32\n", "filters=32\nstopbackward=1\n", 1))
    trainer = make_trainer(cfg, tmp_path, stream_factory, squared_output_loss)
    before = copy.deepcopy(trainer.model.state_dict())
    trainer.run(stop_at=1)
    after = trainer.model.state_dict()
    rate = trainer.rate
    assert rate == pytest.approx(0.01)
    want = before["module_list.4.conv.weight"] * (1 - rate * 0.05)
    assert torch.allclose(after["module_list.4.conv.weight"], want, rtol=1e-6, atol=0)
    for name in ("module_list.4.bn.weight", "module_list.4.bn.bias", "module_list.0.conv.weight"):
        assert torch.equal(after[name], before[name]), name
    assert not torch.allclose(after["module_list.6.conv.weight"], before["module_list.6.conv.weight"] * (1 - rate * 0.05))


LOCAL_CFG = """[net]
batch=4
subdivisions=1
width=32
height=32
channels=3
max_batches=10
decay=0.0005
[local]
filters=8
size=3
stride=2
pad=1
activation=leaky
[convolutional]
batch_normalize=1
filters=18
size=1
activation=linear
[yolo]
mask=0,1,2
anchors=4,4,8,8,16,16
classes=1
num=3
"""


def test_weight_decay_goes_by_role_not_shape(tmp_path):
    """local_layer.c update_local_layer decays ``weights`` only, not its biases, although they are 2-D
    (one per output element); batch-norm scales and shifts are never decayed."""
    cfg = tmp_path / "local.cfg"
    cfg.write_text(LOCAL_CFG)
    model = Darknet(cfg)
    decay_of = {id(p): g["weight_decay"] for g in param_groups(model, TrainSettings.from_net(model.hyperparams))
                for p in g["params"]}
    local, conv = model.module_list[0], model.module_list[1]
    assert local.bias.dim() == 2 and decay_of[id(local.bias)] == 0.0
    assert decay_of[id(local.weight)] == decay_of[id(conv.conv.weight)] == pytest.approx(0.0005 * 4)
    assert decay_of[id(conv.bn.weight)] == decay_of[id(conv.bn.bias)] == 0.0
    assert len(decay_of) == len(list(model.parameters()))


def test_layer_learning_rate_scales_its_group(cfg_factory):
    cfg = cfg_factory(net={"batch": 8, "subdivisions": 1})
    cfg.write_text(cfg.read_text().replace("filters=16\n", "filters=16\nlearning_rate=0.25\n", 1))
    model = Darknet(cfg)
    optimizer = build_optimizer(model, TrainSettings.from_net(model.hyperparams))
    scale_of = {id(p): g["lr_scale"] for g in optimizer.param_groups for p in g["params"]}
    assert scale_of[id(model.module_list[2].conv.weight)] == pytest.approx(0.25 / 8)
    assert scale_of[id(model.module_list[0].conv.weight)] == pytest.approx(1 / 8)


def test_subdivisions_accumulate_like_one_big_batch(cfg_factory, stream_factory, squared_output_loss, tmp_path):
    """Without batch norm, 2 mini-batches of 4 accumulate to exactly the gradient of one batch of 8."""
    common = {"batch": 8, "max_batches": 3, "learning_rate": 0.002, "burn_in": 0, "decay": 0.01}
    split = make_trainer(cfg_factory("a.cfg", net={**common, "subdivisions": 2}, batch_normalize=False),
                         tmp_path / "a", stream_factory, squared_output_loss)
    whole = make_trainer(cfg_factory("b.cfg", net={**common, "subdivisions": 1}, batch_normalize=False),
                         tmp_path / "b", stream_factory, squared_output_loss)
    halves = stream_factory(4, 2)

    def concatenated(start: int):
        stream = iter(halves(start))
        while True:
            (a, ta), (b, tb) = next(stream), next(stream)
            yield torch.cat([a, b]), torch.cat([ta, tb])

    whole.batches = concatenated
    split.run()
    whole.run()
    for a, b in zip(split.model.parameters(), whole.model.parameters()):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-7)


def test_each_update_uses_rate_of_its_iteration(cfg_factory, stream_factory, squared_output_loss, tmp_path):
    net = {"batch": 4, "subdivisions": 2, "max_batches": 6, "learning_rate": 0.01, "burn_in": 3, "power": 2,
           "policy": "poly"}
    trainer = make_trainer(cfg_factory(net=net), tmp_path, stream_factory, squared_output_loss)
    seen_lr = []

    class Recording(torch.nn.Module):
        def forward(self, images, targets):
            seen_lr.append(trainer.optimizer.param_groups[0]["lr"] / trainer.optimizer.param_groups[0]["lr_scale"])
            return squared_output_loss(trainer.model)(images, targets)

    trainer.criterion = Recording()
    trainer.run()
    expected = [0.01 * (k / 3) ** 2 if k < 3 else 0.01 * (1 - k / 6) ** 2 for k in range(1, 7)]
    assert seen_lr[::2] == pytest.approx(expected, rel=1e-6)  # both mini-batches of iteration k use rate(k)
    assert seen_lr[1::2] == seen_lr[::2]
    assert trainer.iteration == 6


def test_detection_loss_is_the_models_training_loss(tiny_cfg):
    torch.manual_seed(0)
    model = Darknet(tiny_cfg).train()
    images = torch.rand(2, 3, 64, 64)
    targets = torch.tensor([[0, 1, 0.5, 0.5, 0.3, 0.4], [1, 2, 0.25, 0.7, 0.2, 0.2]])
    loss, parts = DetectionLoss(model)(images, targets)
    reference, _ = model(images, targets)  # Darknet.forward(x, targets): the heads' loss summed
    assert loss.item() == pytest.approx(reference.item(), rel=1e-6)
    assert (parts["box"] + parts["obj"] + parts["cls"]).item() == pytest.approx(loss.item(), rel=1e-6)
    assert parts["count"].item() >= 2


def test_loss_parts_per_head_are_the_heads_own(golden_dir, tmp_path):
    """Per-head parts (results.csv's box_0, obj_1, ...) are each head's yolo_loss parts; the totals are their sums;
    the per-image values come from the same single device fetch as the progress line."""
    cfg = tmp_path / "two_heads.cfg"  # the mini yolov3-tiny (two [yolo] heads) with a batch that can train
    cfg.write_text((golden_dir / "mini" / "yolov3-tiny" / "yolov3-tiny.cfg").read_text().replace("batch=1\n",
                                                                                                 "batch=2\n", 1))
    torch.manual_seed(0)
    model = Darknet(cfg).train()
    images = torch.rand(2, 3, 128, 128)
    targets = torch.tensor([[0, 1, 0.5, 0.5, 0.3, 0.4], [1, 2, 0.25, 0.7, 0.05, 0.08], [1, 3, 0.6, 0.3, 0.5, 0.6]])
    _, parts = DetectionLoss(model)(images, targets)
    _, head_parts = model.compute_loss(images, targets)
    assert len(head_parts) == 2
    for head, own in enumerate(head_parts):
        for name in ("box", "obj", "cls", "count"):
            assert parts[f"{name}/{head}"].item() == pytest.approx(own[name].item(), rel=1e-6)
    trainer = make_trainer(cfg, tmp_path, lambda *a: None)
    total = sum(parts[f"{name}/{h}"] for name in ("box", "obj", "cls") for h in (0, 1))
    loss, line = trainer._per_image(total, parts, images=2)
    assert list(line)[:3] == ["box", "obj", "cls"] and {"box_0", "obj_1", "cls_1", "iou_0"} <= set(line)
    for name in ("box", "obj", "cls"):
        assert line[name] == pytest.approx(line[f"{name}_0"] + line[f"{name}_1"], rel=1e-6)
        assert line[f"{name}_1"] == pytest.approx(head_parts[1][name].item() / 2, rel=1e-6)
    assert loss == pytest.approx(sum(line[n] for n in ("box", "obj", "cls")), rel=1e-6)
    count = head_parts[0]["count"].item() + head_parts[1]["count"].item()
    assert line["iou"] == pytest.approx(sum((p["iou"] * p["count"]).item() for p in head_parts) / count, rel=1e-6)


def test_untrainable_heads_are_refused(tmp_path, tiny_cfg):
    cfg = tmp_path / "region.cfg"
    text = tiny_cfg.read_text()
    cfg.write_text(text[: text.index("[yolo]")] + "[region]\nanchors=1,1, 2,2, 3,3\nclasses=3\nnum=3\n")
    with pytest.raises(DarknetError, match=r"region.cfg:\d+ \[region\].*not implemented"):
        DetectionLoss(Darknet(cfg))


def test_non_finite_loss_stops_with_the_iteration(cfg_factory, stream_factory, tmp_path):
    class Exploding(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, images, targets):
            out = self.model.head_outputs(images)[0]
            return out.sum() * float("inf"), {}

    trainer = make_trainer(cfg_factory(net={"max_batches": 5}), tmp_path, stream_factory, Exploding)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    with pytest.raises(DarknetError, match="loss became .* at iteration 1"):
        trainer.run()
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.model.parameters()))  # no step was taken


def test_settings_errors_name_the_cfg_line(cfg_factory):
    for net, key in (({"batch": 1, "subdivisions": 1}, "batch"), ({"batch": 4, "subdivisions": 8}, "batch"),
                     ({"max_batches": 0}, "max_batches"), ({"ema_alpha": 1.5}, "ema_alpha")):
        model = Darknet(cfg_factory(net=net))
        with pytest.raises(CfgError, match=rf"tiny.cfg:\d+ \[net\] {key}"):
            TrainSettings.from_net(model.hyperparams)


def test_mini_batch_rounds_down_like_darknet(cfg_factory, caplog):
    model = Darknet(cfg_factory(net={"batch": 10, "subdivisions": 4}))
    with caplog.at_level(logging.WARNING):
        settings = TrainSettings.from_net(model.hyperparams)
    assert (settings.mini_batch, settings.batch) == (2, 8)
    assert "trains 8 images per iteration" in caplog.text


def test_keys_that_cannot_apply_are_reported(cfg_factory):
    cfg = cfg_factory(net={"adam": 1, "loss_scale": 128})
    cfg.write_text(cfg.read_text().replace("filters=16\n", "filters=16\ndont_update=1000\n", 1))
    messages = keys_not_applied(Darknet(cfg))
    assert len(messages) == 3
    assert any("[net] adam=True: not applied (Adam" in m for m in messages)
    assert any("[net] loss_scale" in m for m in messages)
    assert any("[convolutional] dont_update=1000" in m for m in messages)
    assert all("tiny.cfg:" in m for m in messages)


def test_head_training_keys_that_cannot_apply_are_reported(cfg_factory):
    cfg = cfg_factory(yolo={"counters_per_class": "100,20,5", "map": "data/coco9k.map", "iou_thresh_kind": "giou",
                            "iou_thresh": 0.2})
    messages = keys_not_applied(Darknet(cfg))
    assert len(messages) == 2  # iou_thresh_kind is applied (yolo_loss), so it is not reported
    assert any(m.endswith("[yolo] counters_per_class=100,20,5: not applied (the per-class multipliers of the "
                          "class and box deltas are not implemented)") for m in messages)
    assert any("[yolo] map=data/coco9k.map: not applied" in m for m in messages)
    assert keys_not_applied(Darknet(cfg_factory(yolo={"iou_thresh_kind": "iou"}))) == []


def test_head_training_keys_are_checked_like_darknet(cfg_factory):
    with pytest.raises(CfgError, match=r"\[yolo\] counters_per_class: counters_per_class has 2 values but classes=3"):
        Darknet(cfg_factory(yolo={"counters_per_class": "1,2"}))
    with pytest.raises(CfgError, match=r"\[yolo\] iou_thresh_kind: iou_thresh_kind=mse must be iou, giou"):
        Darknet(cfg_factory(yolo={"iou_thresh_kind": "mse"}))


def test_ema_follows_darknets_schedule(tiny_cfg):
    model = Darknet(tiny_cfg)
    ema = DarknetEma(model, alpha=0.5, max_batches=2008)  # starts at 1004, applied at 1008
    weight = ema.tensors[0]
    values = {}
    for k in range(1000, 1012):
        with torch.no_grad():
            weight.fill_(float(k))
        values[k] = ema.step(k)
        if ema.initialized:
            values[k] = (values[k], ema.shadow[0].flatten()[0].item(), weight.flatten()[0].item())
    assert values[1003] is None and not isinstance(values[1003], tuple)
    assert values[1004] == ("init", 1004.0, 1004.0)  # ema_update(net, 0) then the update of the same iteration
    assert values[1005] == ("update", 1004.5, 1005.0)  # 0.5 * 1004 + 0.5 * 1005
    assert values[1006] == ("update", 1005.25, 1006.0)
    assert values[1007] == ("update", 1006.125, 1007.0)
    assert values[1008] == ("apply", 1006.125, 1006.125)  # ema_apply copies the average into the weights
    assert values[1009] == (None, 1006.125, 1009.0)  # after the apply point nothing changes any more
    assert len(ema.tensors) == sum(1 for name, _ in model.named_parameters() if "module_list" in name)


def test_chart_is_written(cfg_factory, stream_factory, squared_output_loss, tmp_path):
    trainer = make_trainer(cfg_factory(net={"max_batches": 3}), tmp_path, stream_factory, squared_output_loss)
    trainer.run()
    chart = tmp_path / "backup" / "chart_tiny.png"
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert trainer.history.loss_iterations == [1, 2, 3]


def test_sparsity_adds_the_bn_scale_subgradient(cfg_factory, stream_factory, squared_output_loss, tmp_path):
    """Network slimming: one update with --sparsity s equals Darknet's update plus rate * s * sign(gamma) on the
    BN scales (s per image, times batch for the summed loss, times rate/batch for the step)."""
    cfg = cfg_factory(net={"burn_in": 0, "learning_rate": 0.1})  # a full-size step: the term is 1e-3, not ~0
    plain = make_trainer(cfg, tmp_path / "a", stream_factory, squared_output_loss)
    sparse = make_trainer(cfg, tmp_path / "b", stream_factory, squared_output_loss, sparsity=0.01)
    before = [m.bn.weight.detach().clone() for m in sparse.model.module_list if getattr(m, "bn", None) is not None]
    plain.run(stop_at=1)
    sparse.run(stop_at=1)
    rate = plain.settings.schedule.rate(1)
    assert rate * 0.01 >= 1e-3
    after_plain = [m.bn.weight.detach() for m in plain.model.module_list if getattr(m, "bn", None) is not None]
    after_sparse = [m.bn.weight.detach() for m in sparse.model.module_list if getattr(m, "bn", None) is not None]
    assert before
    for g0, gp, gs in zip(before, after_plain, after_sparse):
        assert torch.allclose(gs, gp - rate * 0.01 * torch.sign(g0), atol=1e-6)


def test_shared_convolutions_are_one_parameter_set(tmp_path):
    """share_index (TridentNet): the shared kernel is optimised once, under the layer that owns it."""
    from tests.model.test_legacy_layers import SHARED_CFG
    cfg = tmp_path / "shared.cfg"
    cfg.write_text(SHARED_CFG.format(share=1).replace("[net]\n", "[net]\nbatch=2\nmax_batches=10\n"))
    model = Darknet(cfg)
    settings = TrainSettings.from_net(model.hyperparams)
    params = [p for group in param_groups(model, settings) for p in group["params"]]
    assert len(params) == len({id(p) for p in params}) == len(list(model.parameters()))
    build_optimizer(model, settings)  # torch refuses a parameter listed twice
