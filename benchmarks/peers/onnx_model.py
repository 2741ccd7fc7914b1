"""onnxruntime as the network of darknet_torch's pipelines, for benchmarks: the ``evaluate`` (``map``) pipeline with
image decoding, Darknet resize, boxes, NMS and AP unchanged and only the forward an onnxruntime session.

:class:`OnnxDarknet` is an ``nn.Module`` around the loaded :class:`~darknet_torch.model.darknet.Darknet` whose
forward runs the session of its ONNX export (``export_onnx``, dynamic batch; its ``detections`` output is exactly
``Darknet.forward``'s B x N x (5+C), see :mod:`darknet_torch.export.onnx`) and returns a float32 CPU tensor, as the
torch forward does.  Every other attribute the pipeline reads (``heads``, ``head_grids``, ``net``, ``input_size``,
``num_classes``, ``parameters()`` for the device, ...) is the torch model's.

    python benchmarks/peers/onnx_model.py        # coco128 mAP of the onnxruntime pipeline vs the torch model's
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import darknet_torch  # noqa: E402,F401  first, as in the CLI: its thread settings apply before torch loads
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import Tensor, nn  # noqa: E402

from darknet_torch.export.onnx import INPUT_NAME, OUTPUT_NAME, export_onnx  # noqa: E402
from darknet_torch.model.darknet import Darknet  # noqa: E402


def onnxruntime_session(path: Path, threads: int):
    """A CPU session as ``bench_inference.py`` times it: ``threads`` intra-op threads, one inter-op thread."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def exported_session(model: Darknet, path: Path, threads: int):
    """:func:`onnxruntime_session` of ``model``'s ONNX export at ``path`` (exported first when the file is absent)."""
    if not Path(path).exists():
        export_onnx(model, path, dynamic_batch=True)
    return onnxruntime_session(Path(path), threads)


class OnnxDarknet(nn.Module):
    """``model`` with its forward replaced by an onnxruntime session of its export at ``path`` (written if absent)."""

    def __init__(self, model: Darknet, path: Path, threads: int) -> None:
        super().__init__()
        self.darknet = model  # a submodule: parameters() (the device), eval()/train() reach it
        self.session = exported_session(model, path, threads)

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["darknet"], name)

    def forward(self, x: Tensor) -> Tensor:
        array = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        return torch.from_numpy(self.session.run([OUTPUT_NAME], {INPUT_NAME: array})[0])


def main() -> int:
    """coco128's mAP through ``evaluate`` with the torch model and with :class:`OnnxDarknet`; exit 1 if they differ
    by more than 1e-3."""
    import tempfile

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from common import SHARED

    from darknet_torch.config.data_files import read_data_file, read_image_list, read_names
    from darknet_torch.evaluate.runner import evaluate
    from darknet_torch.model.loading import load_model
    from darknet_torch.openmp import available_cores

    settings = read_data_file(SHARED / "coco128" / "coco128.data")
    images, names = read_image_list(settings.valid), read_names(settings.names)
    model = load_model(REPO / "cfg" / "yolov3-tiny.cfg", SHARED / "weights" / "yolov3-tiny.weights")
    with tempfile.TemporaryDirectory(prefix="onnx-map-") as tmp:
        maps = {}
        for name, network in (("torch", model),
                              ("onnxruntime", OnnxDarknet(model, Path(tmp) / "yolov3-tiny.onnx", available_cores()))):
            started = time.perf_counter()
            maps[name] = evaluate(network, images, names, len(names), batch_size=8, progress=False).map
            print(f"{name:12s} mAP@0.5 {maps[name]:.6f}  ({time.perf_counter() - started:.1f} s)", flush=True)
    difference = abs(maps["torch"] - maps["onnxruntime"])
    print(f"difference {difference:.2e} ({'within' if difference <= 1e-3 else 'NOT within'} 1e-3)")
    return 0 if difference <= 1e-3 else 1


if __name__ == "__main__":
    sys.exit(main())
