"""``darknet_torch summary``: layers, shapes, parameters and BFLOPs as Darknet counts them."""
from __future__ import annotations

import argparse

from terminaltables import AsciiTable

from darknet_torch.config import load_cfg
from darknet_torch.model.darknet import Darknet


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("summary", help="print the network's layers, output shapes, parameters and BFLOPs")
    p.add_argument("--cfg", required=True, help="Darknet .cfg file")
    p.add_argument("--img-size", type=int, nargs="+", metavar=("H", "W"), help="network size (default: [net])")
    p.set_defaults(run=run)


def summarize(model: Darknet) -> str:
    rows = [["layer", "type", "filters/size/stride", "input", "output", "params", "BFLOPs"]]
    for info, module in zip(model.layer_infos, model.module_list):
        sec = info.section
        detail = ""
        if sec.name == "convolutional":
            detail = f"{sec['filters']} {sec['size']}x{sec['size']}/{sec['stride']}"
        elif sec.name in ("route", "shortcut"):
            detail = " ".join(str(s) for s in module.sources)
        params = sum(p.numel() for p in module.parameters())
        rows.append([info.index, sec.name, detail, "x".join(map(str, info.in_shape)),
                     "x".join(map(str, info.out_shape)), f"{params:,}", f"{info.bflops:.3f}"])
    total_params = sum(p.numel() for p in model.parameters())
    total_bflops = sum(i.bflops for i in model.layer_infos)
    table = AsciiTable(rows).table
    return f"{table}\nTotal parameters {total_params:,}\nTotal BFLOPS {total_bflops:.3f}"


def run(args: argparse.Namespace) -> int:
    sections = load_cfg(args.cfg)
    if args.img_size:
        h, w = (args.img_size * 2)[:2]
        sections[0].values.update(height=h, width=w)
    print(summarize(Darknet(sections)))
    return 0
