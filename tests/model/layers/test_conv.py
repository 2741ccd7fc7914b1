"""A fused ``ConvBlock`` never runs on a stale folded kernel: changed or moved parameters are refolded."""
from __future__ import annotations

import torch

from darknet_torch.model.layers.conv import ConvBlock


def _block() -> ConvBlock:
    torch.manual_seed(0)
    block = ConvBlock(3, 4, 3, (1, 1), 1, 1, 1, True, "leaky")
    with torch.no_grad():
        block.bn.running_mean.uniform_(-1, 1)
        block.bn.running_var.uniform_(0.5, 2)
    return block.eval()


def _fused_and_run(x: torch.Tensor) -> ConvBlock:
    """A fused block that has already folded its kernel once (on ``x`` as float32)."""
    block = _block()
    block.fuse()
    block(x.float())
    return block


def _unfused(block: ConvBlock, x: torch.Tensor) -> torch.Tensor:
    block.unfuse()
    try:
        return block(x)
    finally:
        block.fuse()


@torch.no_grad()
def test_load_state_dict_after_fuse_is_used():
    block, x = _block(), torch.rand(1, 3, 8, 8)
    block.fuse()
    before = block(x)
    state = {k: v * 0.5 if k == "bn.weight" else v for k, v in block.state_dict().items()}
    block.load_state_dict(state)
    after = block(x)
    assert not torch.allclose(after, before)
    torch.testing.assert_close(after, _unfused(block, x))


@torch.no_grad()
def test_in_place_change_after_fuse_is_used():
    x = torch.rand(1, 3, 8, 8)
    block = _fused_and_run(x)
    block.conv.weight.mul_(2)
    torch.testing.assert_close(block(x), _unfused(block, x))


@torch.no_grad()
def test_double_after_fuse_runs_in_float64():
    x = torch.rand(1, 3, 8, 8, dtype=torch.float64)
    block = _fused_and_run(x)
    block.double()
    out = block(x)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, _unfused(block, x))


@torch.no_grad()
def test_unchanged_parameters_fold_once():
    x = torch.rand(1, 3, 8, 8)
    block = _fused_and_run(x)
    first = block.fused
    block(x)
    assert block.fused[0] is first[0] and block.fused[1] is first[1]


@torch.no_grad()
def test_load_state_dict_with_new_tensors_after_fuse_is_used():
    x = torch.rand(1, 3, 8, 8)
    block = _fused_and_run(x)
    state = {k: v * 0.5 if k == "conv.weight" else v.clone() for k, v in block.state_dict().items()}
    block.load_state_dict(state, assign=True)
    torch.testing.assert_close(block(x), _unfused(block, x))
