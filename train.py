"""``python train.py --data obj.data --cfg x.cfg [--weights w]`` or Darknet's order ``python train.py obj.data x.cfg [w]``.

A thin wrapper over ``darknet_torch train`` (see ``python train.py --help``); under ``torchrun`` it trains on all GPUs.
"""
import sys

from darknet_torch.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
