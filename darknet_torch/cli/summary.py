"""``darknet_torch summary``: layers, shapes, parameters and BFLOPs as Darknet counts them."""
from __future__ import annotations

import argparse

from terminaltables import AsciiTable

from darknet_torch.cli.options import add_img_size_argument
from darknet_torch.config import load_cfg
from darknet_torch.detect.build import check_input_size
from darknet_torch.model.darknet import Darknet


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("summary", help="print the network's layers, output shapes, parameters and BFLOPs")
    p.add_argument("--cfg", required=True, help="Darknet .cfg file")
    add_img_size_argument(p, "network height [width] (default: [net]); a multiple of the network's stride")
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
    model = Darknet(sections)
    if args.img_size:
        check_input_size(model, args.img_size)  # as detect, map and export refuse it
        h, w = args.img_size
        sections[0].values.update(height=h, width=w)
        model = Darknet(sections)
    print(summarize(model))
    return 0
