"""Peer implementations the benchmarks compare darknet_torch against (OpenCV DNN, onnxruntime, pytorchyolo)."""
