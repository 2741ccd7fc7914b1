"""Layer-by-layer parity with the C Darknet (../shared/golden): every dumped layer within 1e-4 * max|ref|.

Tolerance from golden/README.md section 7 (Darknet's own AVX vs non-AVX builds differ by up to 3e-5 relative).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from darknet_torch import Darknet
from darknet_torch.model.heads import RegionLayer
from tests.golden import golden_runs, load_run

REL_TOL = 1e-4
RUNS = golden_runs("mini") + [p for p in golden_runs("real") if p.name.endswith("all_layers")]


def _model(run) -> Darknet:
    if not run.weights.exists():
        pytest.skip(f"weights not found: {run.weights}")
    return Darknet(run.cfg).load_darknet_weights(run.weights).eval()


def _darknet_layout(module, out: torch.Tensor) -> np.ndarray:
    if isinstance(module, RegionLayer):
        out = module.darknet_layout(out)
    return out.numpy().ravel()


@pytest.mark.parametrize("folder", RUNS, ids=[p.name for p in RUNS])
def test_every_dumped_layer_matches_darknet(folder):
    run = load_run(folder)
    model = _model(run)
    assert len(model.module_list) == run.index["net"]["n_layers"]
    with torch.inference_mode():
        outputs = model.forward_layers(run.input())
    compared = 0
    for entry in run.index["layers"]:
        i = entry["index"]
        assert model.layer_infos[i].out_shape == (entry["out_c"], entry["out_h"], entry["out_w"]), f"layer {i} shape"
        ref = run.layer(i)
        if ref is None:
            continue
        ours = _darknet_layout(model.module_list[i], outputs[i])
        scale = float(np.abs(ref).max())
        err = float(np.abs(ours - ref).max())
        assert err <= REL_TOL * scale, f"layer {i} [{entry['type']}]: max abs err {err:.3g} vs max|ref| {scale:.3g}"
        compared += 1
    assert compared >= len(model.head_indices) > 0


@pytest.mark.parametrize("folder", golden_runs("mini")[:3], ids=[p.name for p in golden_runs("mini")[:3]])
def test_fused_batchnorm_matches_unfused(folder):
    run = load_run(folder)
    model = _model(run)
    x = run.input()
    with torch.inference_mode():
        plain = model(x)
        fused = model.fuse()(x)
    scale = plain.abs().max()
    assert torch.allclose(plain, fused, atol=float(1e-5 * scale))
