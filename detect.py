#!/usr/bin/env python
"""Detect objects with a Darknet model: ``python detect.py [SOURCE ...] [options]`` = ``darknet_torch detect ...``.

With no arguments: yolov4-tiny on data/samples, results in runs/detect/ (see README, "Detection").
"""
import sys

from darknet_torch.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["detect", *sys.argv[1:]]))
