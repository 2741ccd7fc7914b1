"""Data-parallel training: two CPU processes (gloo) launched by torchrun against Darknet's multi-GPU update."""
from __future__ import annotations

import pytest
import torch

from darknet_torch.config.data_files import read_data_file
from darknet_torch.data.training import build_train_loader
from darknet_torch.distributed import DistContext, init_distributed
from darknet_torch.model.darknet import Darknet
from darknet_torch.train.distributed import wrap_model
from darknet_torch.train.loop import DetectionLoss
from darknet_torch.train.optim import TrainSettings, darknet_init_
from tests.multiprocess import torchrun

WORLD = 2
SEED = 7
NET = {"batch": 4, "subdivisions": 2, "max_batches": 3, "learning_rate": 0.01, "burn_in": 0, "policy": "constant",
       "momentum": 0.9, "decay": 0.005}


def darknet_multi_gpu(cfg, data, iterations: int) -> Darknet:
    """Darknet's ``-gpus 0,1`` written out: every GPU trains the whole cfg ``batch`` on its own images with rate
    ``learning_rate * ngpus`` (detector.c), runs update_convolutional_layer on its own copy, and the copies' weights
    are averaged (sync_nets; here after every iteration).  Same initialisation and data as ``train()``."""
    torch.manual_seed(SEED)
    model = Darknet(cfg)
    darknet_init_(model, torch.Generator().manual_seed(SEED))
    settings = TrainSettings.from_net(model.hyperparams)
    heads = [model.layer_infos[i].section for i in model.head_indices]
    streams = [iter(build_train_loader(read_data_file(data), model.hyperparams, heads, 0, SEED, 0, rank, WORLD))
               for rank in range(WORLD)]
    params = list(model.parameters())
    updates = [[torch.zeros_like(p) for p in params] for _ in range(WORLD)]
    criterion = DetectionLoss(model)
    for k in range(1, iterations + 1):
        rate = settings.schedule.rate(k) * WORLD
        copies = []
        for rank in range(WORLD):
            for _ in range(settings.subdivisions):
                images, targets = next(streams[rank])
                loss, _ = criterion(images, targets)
                for v, g in zip(updates[rank], torch.autograd.grad(loss, params)):
                    v -= g
            weights = []
            with torch.no_grad():
                for p, v in zip(params, updates[rank]):
                    if p.dim() > 1:
                        v -= settings.decay * settings.batch * p
                    weights.append(p + rate / settings.batch * v)
                    v *= settings.momentum
            copies.append(weights)
        with torch.no_grad():
            for i, p in enumerate(params):
                p.copy_(sum(copy[i] for copy in copies) / WORLD)
    return model


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")  # for the in-process reference; torchrun's processes set their own
def test_two_processes_train_as_darknets_two_gpus(synthetic_data, cfg_factory, tmp_path):
    # No batch norm: through a channel whose batch variance is tiny, BN makes the first conv's gradient so
    # ill-conditioned that 1e-7 differences in the weights (the all-reduce's summation order) grow to 1e-4 in two
    # iterations; per-GPU BN statistics are what both Darknet and DDP use anyway.
    cfg = cfg_factory(net=NET, yolo={"jitter": 0.2}, batch_normalize=False)
    done = torchrun(["train", "--data", str(synthetic_data), "--cfg", str(cfg), "--workers", "0", "--seed",
                     str(SEED), "--quiet", "--backup", str(tmp_path / "ddp")], processes=WORLD)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("trained to iteration 3") == WORLD
    trained = Darknet(cfg).load_darknet_weights(tmp_path / "ddp" / "tiny_final.weights")
    assert trained.header.seen == 3 * NET["batch"]  # Darknet's first GPU writes iteration * its batch

    expected = darknet_multi_gpu(cfg, synthetic_data, 3)
    initial = Darknet(cfg)
    darknet_init_(initial, torch.Generator().manual_seed(SEED))
    for (name, got), want, start in zip(trained.named_parameters(), expected.parameters(), initial.parameters()):
        assert torch.allclose(got, want, rtol=1e-5, atol=1e-6), name
        assert (got - start).abs().max() > 1e-3, name  # every tensor was trained


def test_without_torchrun_there_is_one_process(monkeypatch):
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    ctx = init_distributed("cpu")
    assert (ctx.rank, ctx.world_size, ctx.is_main, ctx.enabled) == (0, 1, True, False)
    module = torch.nn.Linear(2, 2)
    assert wrap_model(module, ctx) is module
    assert DistContext().device == torch.device("cpu")
