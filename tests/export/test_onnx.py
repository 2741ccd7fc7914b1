"""ONNX export: onnxruntime reproduces ``Darknet.forward`` (decode included) within 1e-4 x max|output| on every mini
golden net and the real yolov3-tiny, at other batch sizes and (dynamic size) other input sizes; the in-graph NMS
keeps exactly Darknet's ``do_nms_sort`` survivors above 0.25 on the real photos; every project cfg exports and runs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from darknet_torch import Darknet
from darknet_torch.cli.main import main
from darknet_torch.config import load_cfg
from darknet_torch.config.sections import Section
from darknet_torch.errors import CfgError, DarknetError
from darknet_torch.export.onnx import (NmsOptions, _DetectionsWithNms, export_onnx, onnx_session, run_onnx,
                                       size_multiple)
from tests.golden import GOLDEN, golden_runs, load_run

pytest.importorskip("onnxruntime", reason="the onnx extra is not installed (pip install -e '.[onnx]')")

REL_TOL = 1e-4  # golden/README.md section 7: 1e-4 x max|ref| per output
MINI = golden_runs("mini")
PHOTOS = [GOLDEN / "real" / f"{name}_resize" for name in ("dog", "eagle", "giraffe", "horses")]
REAL_CFG = GOLDEN / "real" / "yolov3-tiny_mask123.cfg"
PROJECT_CFGS = sorted((Path(__file__).resolve().parents[2] / "cfg").glob("*.cfg"))
HEAD_SECTIONS = {"yolo", "Gaussian_yolo", "region"}


def _assert_close(got: np.ndarray, expected: torch.Tensor, what: str) -> None:
    expected = expected.numpy()
    assert got.shape == expected.shape, f"{what}: shape {got.shape} != {expected.shape}"
    scale = float(np.abs(expected).max())
    err = float(np.abs(got - expected).max())
    assert err <= REL_TOL * scale, f"{what}: max abs err {err:.3g} vs max|torch| {scale:.3g}"


def _reference(model: Darknet, x: torch.Tensor) -> torch.Tensor:
    """The PyTorch output as the golden tests check it: eval mode, BN not folded."""
    with torch.no_grad():
        return model.eval()(x)


def _random(shape: tuple[int, ...], seed: int = 1) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------------------------------- golden nets
@pytest.mark.parametrize("folder", MINI, ids=[p.name for p in MINI])
def test_mini_net_in_onnxruntime_matches_pytorch_at_batch_1_and_4(folder, tmp_path):
    run = load_run(folder)
    model = Darknet(run.cfg).load_darknet_weights(run.weights)
    session = onnx_session(export_onnx(model, tmp_path / "net.onnx", dynamic_batch=True))
    x = run.input()
    batch = torch.cat([x, _random((3, *x.shape[1:]))])
    expected = _reference(model, batch)
    _assert_close(run_onnx(session, x), expected[:1], f"{run.name} batch 1")
    _assert_close(run_onnx(session, batch), expected, f"{run.name} batch 4")


@pytest.fixture(scope="module")
def real_model(real_weights) -> Darknet:
    return Darknet(REAL_CFG).load_darknet_weights(real_weights)


@pytest.fixture(scope="module")
def real_session(real_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "yolov3-tiny.onnx"
    return onnx_session(export_onnx(real_model, path, dynamic_batch=True, dynamic_size=True))


def _photos() -> torch.Tensor:
    return torch.cat([load_run(folder).input() for folder in PHOTOS])


def test_real_yolov3_tiny_matches_pytorch_at_batch_1_and_4(real_model, real_session):
    photos = _photos()
    expected = _reference(real_model, photos)
    _assert_close(run_onnx(real_session, photos[:1]), expected[:1], "batch 1")
    _assert_close(run_onnx(real_session, photos), expected, "batch 4")


@pytest.mark.parametrize("size", [(320, 320), (416, 416), (320, 416), (608, 352)])
def test_dynamic_size_builds_the_grid_at_run_time(real_model, real_session, size):
    x = _random((2, 3, *size))
    got = run_onnx(real_session, x)
    cells = sum(h * w for h, w in ((size[0] // 32, size[1] // 32), (size[0] // 16, size[1] // 16)))
    assert got.shape == (2, 3 * cells, 85)
    _assert_close(got, _reference(real_model, x), f"{size}")


def test_export_restores_training_mode_and_unfused_state(real_model, tmp_path):
    real_model.train()
    export_onnx(real_model, tmp_path / "m.onnx", img_size=(128, 128))
    assert real_model.training
    assert all(m.fused is None for m in real_model.modules() if hasattr(m, "fused"))
    real_model.eval()


def test_in_graph_nms_keeps_darknets_survivors_above_the_threshold(real_model, golden_dir, tmp_path):
    """Greedy NMS: boxes scored <= 0.25 never suppress higher ones, so Darknet's survivors (do_nms_sort on
    thresh 0.005 boxes) above 0.25 must be exactly the ONNX NMS output with score threshold 0.25."""
    path = export_onnx(real_model, tmp_path / "nms.onnx", dynamic_batch=True, nms=NmsOptions(0.45, 0.25))
    got = run_onnx(onnx_session(path), _photos())
    assert got.shape[1] == 7
    for image, folder in enumerate(PHOTOS):
        run = load_run(folder)
        pre = run.dets("dets_pre_nms.f32", folder / "mask123")
        post = run.dets("dets_post_nms.f32", folder / "mask123")
        post = post[post[:, 2] > 0.25]
        cx, cy, w, h = (pre[post[:, 0].astype(int), 1:5] * 416).T  # resize mode: relative to the network input
        expected = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, post[:, 2], post[:, 1]], axis=1)
        ours = got[got[:, 0] == image, 1:]
        assert len(ours) == len(expected) > 0, f"{folder.name}: {len(ours)} detections, Darknet {len(expected)}"
        order = np.lexsort((-expected[:, 4], expected[:, 5]))  # onnxruntime: by class, then descending score
        np.testing.assert_allclose(ours[:, 5], expected[order, 5], err_msg=f"{folder.name} classes")
        np.testing.assert_allclose(ours[:, 4], expected[order, 4], atol=1e-4, err_msg=f"{folder.name} scores")
        np.testing.assert_allclose(ours[:, :4], expected[order, :4], atol=0.05, err_msg=f"{folder.name} boxes")


def test_nms_node_is_export_only(real_model):
    with pytest.raises(RuntimeError, match="only exists in the exported ONNX graph"):
        _DetectionsWithNms(real_model.eval(), NmsOptions())(_random((1, 3, 64, 64)))


# ---------------------------------------------------------------------------------------------------- options
@pytest.mark.parametrize("opset", [11, 17, 20])
def test_other_opsets_export_and_match(opset, golden_dir, tmp_path):
    run = load_run(GOLDEN / "mini" / "yolov3-tiny")
    model = Darknet(run.cfg).load_darknet_weights(run.weights)
    session = onnx_session(export_onnx(model, tmp_path / "net.onnx", opset=opset))
    assert session.get_modelmeta() is not None
    _assert_close(run_onnx(session, run.input()), _reference(model, run.input()), f"opset {opset}")


def test_static_export_fixes_batch_and_size(golden_dir, tmp_path):
    run = load_run(GOLDEN / "mini" / "yolov4-tiny")
    model = Darknet(run.cfg).load_darknet_weights(run.weights)
    session = onnx_session(export_onnx(model, tmp_path / "net.onnx", batch_size=2))
    assert session.get_inputs()[0].shape == [2, 3, 128, 128]
    with pytest.raises(Exception, match="invalid dimensions"):
        run_onnx(session, _random((1, 3, 128, 128)))


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "net.cfg"
    path.write_text(text)
    return path


NET = "[net]\nwidth=32\nheight=32\nchannels=3\n[convolutional]\nfilters=4\nsize=3\nstride=2\npad=1\nactivation=leaky\n"


def test_bad_options_and_unexportable_networks_are_clear_errors(tmp_path):
    model = Darknet(_write(tmp_path, NET + "[connected]\noutput=6\nactivation=linear\n"
                                          "[yolo]\nmask=0\nanchors=10,10\nclasses=1\nnum=1\n"))
    with pytest.raises(DarknetError, match="opset 9"):
        export_onnx(model, tmp_path / "m.onnx", opset=9)
    with pytest.raises(CfgError, match=r"net\.cfg:11 \[connected\].*fixed input size"):
        export_onnx(model, tmp_path / "m.onnx", dynamic_size=True)
    with pytest.raises(CfgError, match="cannot trace the network at 48x48"):
        export_onnx(model, tmp_path / "m.onnx", img_size=(48, 48))
    with pytest.raises(DarknetError, match="IoU threshold in \\[0, 1\\]"):
        export_onnx(model, tmp_path / "m.onnx", nms=NmsOptions(iou_thresh=1.5))
    (tmp_path / "file").write_text("")
    with pytest.raises(DarknetError, match="cannot write the ONNX file"):
        export_onnx(model, tmp_path / "file" / "m.onnx")
    with pytest.raises(CfgError, match="no \\[yolo\\]/\\[region\\] head"):
        export_onnx(Darknet(_write(tmp_path, NET)), tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


HEAD = "[convolutional]\nfilters=6\nsize=1\nstride=1\npad=1\nactivation=linear\n" \
       "[yolo]\nmask=0\nanchors=10,10\nclasses=1\nnum=1\n"


def test_local_layers_are_refused_for_dynamic_size(tmp_path):
    model = Darknet(_write(tmp_path, NET + "[local]\nfilters=4\nsize=3\nstride=1\npad=1\nactivation=leaky\n" + HEAD))
    with pytest.raises(CfgError, match=r"net\.cfg:11 \[local\]: \[local\] layers hold weights for one fixed input"):
        export_onnx(model, tmp_path / "m.onnx", dynamic_size=True)
    assert not (tmp_path / "m.onnx").exists()


def test_grayscale_network_exports_with_its_channels(tmp_path):
    torch.manual_seed(0)
    model = Darknet(_write(tmp_path, NET.replace("channels=3", "channels=1") + HEAD))
    session = onnx_session(export_onnx(model, tmp_path / "gray.onnx"))
    assert session.get_inputs()[0].shape == [1, 1, 32, 32]
    x = _random((1, 1, 32, 32))
    _assert_close(run_onnx(session, x), _reference(model, x), "channels=1")


def test_size_multiple_counts_layers_smaller_than_the_heads(tmp_path):
    reorg = load_run(GOLDEN / "mini" / "yolov4-sam-mish-csp-reorg-bfm")
    model = Darknet(reorg.cfg)
    assert (model.stride, size_multiple(model)) == (32, 64)  # runs at 192x192, not at 160x160
    tiny = Darknet(load_run(GOLDEN / "mini" / "yolov3-tiny").cfg)
    assert size_multiple(tiny) == tiny.stride == 32
    squeeze = Darknet(_write(tmp_path, NET + "[avgpool]\n" + HEAD))  # a 1x1 global output follows no input size
    assert size_multiple(squeeze) == squeeze.stride == 32


def test_run_failures_are_darknet_errors(tmp_path):
    model = Darknet(_write(tmp_path, NET + HEAD))
    session = onnx_session(export_onnx(model, tmp_path / "m.onnx"))
    with pytest.raises(DarknetError, match="onnxruntime cannot run the graph on a 1x3x48x48 input"):
        run_onnx(session, _random((1, 3, 48, 48)))


# ---------------------------------------------------------------------------------------------------- project cfgs
def _slim(cfg: Path, size: int) -> list[Section]:
    """The cfg with every conv's filters / 8 (except before a head), as golden/README.md section 5's minifier:
    the same graph at 1/64 of the weights, so exporting the big nets stays fast."""
    sections = load_cfg(cfg)
    sections[0].values.update(width=size, height=size)
    for section, following in zip(sections, sections[1:]):
        filters = section.get("filters", 0)
        if section.name != "convolutional" or following.name in HEAD_SECTIONS or filters % 8:
            continue
        groups = section["groups"]
        section.values["filters"] = filters // 8
        if groups == filters:
            section.values["groups"] = filters // 8
        elif groups > 1:
            section.values["groups"] = groups // 8
    return sections


@pytest.mark.parametrize("cfg", PROJECT_CFGS, ids=[p.stem for p in PROJECT_CFGS])
def test_every_project_cfg_exports_and_runs_in_onnxruntime(cfg, tmp_path):
    torch.manual_seed(0)
    model = Darknet(_slim(cfg, 128))
    session = onnx_session(export_onnx(model, tmp_path / "net.onnx", dynamic_batch=True))
    x = _random((2, 3, 128, 128))
    _assert_close(run_onnx(session, x), _reference(model, x), cfg.name)


def test_project_cfgs_are_found():
    if not PROJECT_CFGS:
        pytest.skip("no cfg/*.cfg in the checkout yet")
    assert all(p.suffix == ".cfg" for p in PROJECT_CFGS)


# ---------------------------------------------------------------------------------------------------- CLI
def test_cli_export_writes_and_verifies(golden_dir, tmp_path, capsys):
    run = load_run(GOLDEN / "mini" / "yolov3-tiny-prn")
    out = tmp_path / "prn.onnx"
    code = main(["export", "--cfg", str(run.cfg), "--weights", str(run.weights), "--output", str(out),
                 "--dynamic-batch", "--dynamic-size"])
    assert code == 0 and out.exists()
    assert f"exported {out}" in capsys.readouterr().out
    session = onnx_session(out)
    assert [d if isinstance(d, int) else "dyn" for d in session.get_inputs()[0].shape] == ["dyn", 3, "dyn", "dyn"]
    assert main(["export", "--cfg", str(run.cfg), "--weights", str(run.weights), "--output", str(out), "--nms"]) == 0
    assert onnx_session(out).get_outputs()[0].shape[1] == 7


def test_cli_export_errors_exit_2(golden_dir, tmp_path, capsys):
    run = load_run(GOLDEN / "mini" / "yolov3-tiny")
    assert main(["export", "--cfg", str(run.cfg), "--weights", str(tmp_path / "none.weights")]) == 2
    assert "weights file not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:  # argparse's usage error
        main(["export", "--cfg", str(run.cfg), "--weights", str(run.weights), "--output", str(tmp_path / "m.onnx"),
              "--img-size", "1", "2", "3"])
    assert exited.value.code == 2 and "--img-size: takes H or H W, got 3 values" in capsys.readouterr().err
