"""Exporting networks to other runtimes: ONNX with box decoding (and optionally NMS) in the graph."""
from darknet_torch.export.onnx import DEFAULT_OPSET, NmsOptions, export_onnx

__all__ = ["DEFAULT_OPSET", "NmsOptions", "export_onnx"]
