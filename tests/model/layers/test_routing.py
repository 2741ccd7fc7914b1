"""``[shortcut]`` against a loop transcription of Darknet's shortcut_multilayer_cpu, for inputs of other shapes."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from darknet_torch.model.layers.routing import Shortcut


def _shortcut_loops(x: np.ndarray, refs: list[np.ndarray], weights: np.ndarray | None, norm: str) -> np.ndarray:
    """shortcut_multilayer_cpu for one sample: the weight index follows the output element (src_i / step)."""
    flat, adds = x.reshape(-1), [r.reshape(-1) for r in refs]
    out = np.empty_like(flat)
    layer_step = 0 if weights is None else weights.shape[1]
    step = flat.size // layer_step if layer_step else 0
    for src_i in range(flat.size):
        w = np.ones(len(refs) + 1, np.float32) if weights is None else weights[:, src_i // step].astype(np.float64)
        if weights is not None and norm == "relu":
            w = np.maximum(w, 0) / (np.maximum(w, 0).sum() + 1e-4)
        elif weights is not None and norm == "softmax":
            e = np.exp(w - w.max())
            w = e / (e.sum() + 1e-4)
        out[src_i] = flat[src_i] * w[0]
        for i, add in enumerate(adds, start=1):
            if src_i < add.size:
                out[src_i] += add[src_i] * w[i]
    return out.reshape(x.shape)


@pytest.mark.parametrize("ref_shape", [(3, 4, 4), (6, 4, 4), (2, 4, 4), (5, 2, 2), (2, 8, 8)])
@pytest.mark.parametrize("weights_type,norm", [("none", "none"), ("per_feature", "relu"),
                                               ("per_channel", "none"), ("per_channel", "softmax")])
def test_matches_darknet_for_wider_narrower_and_resized_inputs(ref_shape, weights_type, norm):
    """per_channel with a ``from`` layer wider than the input used to crash; resized ones got the ref's weights."""
    torch.manual_seed(0)
    x, refs = torch.randn(1, 3, 4, 4), [torch.randn(1, *ref_shape), torch.randn(1, 3, 4, 4)]
    layer = Shortcut((0, 1), "linear", weights_type, norm, channels=3)
    if layer.weights is not None:
        torch.nn.init.normal_(layer.weights)
    with torch.no_grad():
        out = layer(x, refs)
    weights = None if layer.weights is None else layer.weights.detach().numpy()
    expected = _shortcut_loops(x[0].numpy(), [r[0].numpy() for r in refs], weights, norm)
    np.testing.assert_allclose(out[0].numpy(), expected, rtol=1e-5, atol=1e-6)
