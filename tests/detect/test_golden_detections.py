"""Decoded boxes and NMS survivors equal Darknet's (golden dets_pre_nms / dets_post_nms / dets_post_cfgnms).

Tolerances (golden/README.md section 7): boxes, objectness and probabilities within 1e-4 relative to the column's
scale; NMS survivors compared as exact (idx, class) sets.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from darknet_torch import Darknet
from darknet_torch.data.images import LetterboxInfo, letterbox_geometry
from darknet_torch.detect.postprocess import darknet_detections
from darknet_torch.detect.predictor import nms_settings
from darknet_torch.model.heads import RegionLayer
from darknet_torch.ops.nms import apply_nms
from tests.golden import golden_runs, load_run

REL_TOL = 1e-4
MINI = golden_runs("mini")
REAL = [p for p in golden_runs("real") if not p.name.endswith("all_layers")]
CASES = [(p, None) for p in MINI] + [(p, v) for p in REAL for v in ("shipped", "mask123")]


def _info(run) -> LetterboxInfo:
    spec = run.index["detections"]["get_network_boxes"]
    net = run.index["net"]
    if spec["letter"]:
        return letterbox_geometry(spec["w"], spec["h"], net["w"], net["h"])
    return LetterboxInfo(spec["w"], spec["h"], net["w"], net["h"], net["w"], net["h"], 0, 0)


def _our_detections(run, cfg):
    if not run.weights.exists():
        pytest.skip(f"weights not found: {run.weights}")
    model = Darknet(cfg).load_darknet_weights(run.weights).eval()
    with torch.inference_mode():
        decoded = model(run.input())[0]
    keep_all = [isinstance(h, RegionLayer) for h in model.heads]
    dets = darknet_detections(decoded, model.head_grids(), keep_all, _info(run),
                              run.index["detections"]["get_network_boxes"]["thresh"])
    return model, dets


def _close(ours: np.ndarray, ref: np.ndarray, what: str) -> None:
    scale = max(float(np.abs(ref).max()), 1e-6)
    err = float(np.abs(ours - ref).max()) if ref.size else 0.0
    assert err <= REL_TOL * scale, f"{what}: max abs err {err:.3g} vs scale {scale:.3g}"


def _survivors(rows: np.ndarray) -> set[tuple[int, int]]:
    return {(int(i), int(c)) for i, c, _ in rows}


@pytest.mark.parametrize("folder,variant", CASES, ids=[f"{p.parent.name}-{p.name}-{v or 'cfg'}" for p, v in CASES])
def test_boxes_and_nms_match_darknet(folder, variant):
    run = load_run(folder)
    det_folder = folder / "mask123" if variant == "mask123" else folder
    cfg = folder.parent / "yolov3-tiny_mask123.cfg" if variant == "mask123" else run.cfg
    model, dets = _our_detections(run, cfg)
    ref = run.dets("dets_pre_nms.f32", det_folder)
    classes = run.index["detections"]["classes"]
    assert len(dets) == len(ref), "number of boxes above the threshold"
    _close(dets.boxes.numpy(), ref[:, 1:5], "boxes")
    _close(dets.objectness.numpy(), ref[:, 5], "objectness")
    _close(dets.probs.numpy(), ref[:, 6:6 + classes], "probabilities")

    probs = apply_nms(dets.boxes, dets.objectness, dets.probs, 0.45, "default")
    rows, cls = np.nonzero(probs.numpy())
    assert {(int(r), int(c)) for r, c in zip(rows, cls)} == _survivors(run.dets("dets_post_nms.f32", det_folder))

    cfg_nms = det_folder / "dets_post_cfgnms.f32"
    if cfg_nms.exists():
        kind, beta = nms_settings(model)
        probs = apply_nms(dets.boxes, dets.objectness, dets.probs, 0.45, kind, beta)
        rows, cls = np.nonzero(probs.numpy())
        assert {(int(r), int(c)) for r, c in zip(rows, cls)} == _survivors(run.dets("dets_post_cfgnms.f32"))
