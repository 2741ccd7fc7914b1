"""``[yolo]`` and ``[Gaussian_yolo]`` heads: Darknet's in-place activation, grid offsets and box decoding.

``forward`` returns exactly what Darknet's layer holds in ``l.output`` (layout ``[anchor][entry][row][col]``), so layer
dumps compare 1:1 with the goldens; ``decode`` turns that into boxes.  Training (targets and losses) lives in
``darknet_torch.model.heads.yolo_loss``, which imports this module (never the reverse); ``model.losses`` maps the head
type to it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from darknet_torch.config.sections import Section


@dataclass(frozen=True)
class YoloConfig:
    """The parsed ``[yolo]`` settings a head needs, typed, with Darknet's defaults (see config/sections.py)."""

    classes: int
    mask: tuple[int, ...]
    anchors: tuple[tuple[float, float], ...]  # all anchors of the section, in input pixels
    scale_x_y: float
    new_coords: bool
    nms_kind: str
    beta_nms: float
    ignore_thresh: float
    truth_thresh: float
    iou_thresh: float
    iou_loss: str
    iou_normalizer: float
    obj_normalizer: float
    cls_normalizer: float
    delta_normalizer: float
    max_delta: float
    label_smooth_eps: float
    objectness_smooth: bool
    random: float
    jitter: float
    resize: float
    focal_loss: bool
    iou_thresh_kind: str = "iou"  # box_iou_kind for the iou_thresh extra anchors: iou, giou, diou or ciou
    yolo_point: str = "center"  # [Gaussian_yolo] only: which box point x,y predict (center, left_top, right_bottom)

    @classmethod
    def from_section(cls, sec: Section, anchors: tuple[tuple[float, float], ...], mask: tuple[int, ...]) -> "YoloConfig":
        return cls(classes=sec["classes"], mask=mask, anchors=anchors,
                   scale_x_y=float(np.float32(sec["scale_x_y"])), new_coords=bool(sec.get("new_coords", False)),
                   nms_kind=sec["nms_kind"], beta_nms=sec["beta_nms"], ignore_thresh=sec["ignore_thresh"],
                   truth_thresh=sec["truth_thresh"], iou_thresh=sec["iou_thresh"], iou_loss=sec["iou_loss"],
                   iou_normalizer=sec["iou_normalizer"], obj_normalizer=sec["obj_normalizer"],
                   cls_normalizer=sec["cls_normalizer"], delta_normalizer=sec["delta_normalizer"],
                   max_delta=sec["max_delta"], label_smooth_eps=sec["label_smooth_eps"],
                   objectness_smooth=bool(sec["objectness_smooth"]), random=sec["random"], jitter=sec["jitter"],
                   resize=sec["resize"], focal_loss=bool(sec.get("focal_loss", False)),
                   iou_thresh_kind=sec["iou_thresh_kind"], yolo_point=sec.get("yolo_point", "center"))

    @property
    def masked_anchors(self) -> tuple[tuple[float, float], ...]:
        return tuple(self.anchors[m] for m in self.mask)


def grid_offsets(h: int, w: int, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """Column and row index of every cell, shaped to broadcast over ``(B, anchors, H, W)``."""
    cols = torch.arange(w, device=device, dtype=dtype).reshape(1, 1, 1, w)
    rows = torch.arange(h, device=device, dtype=dtype).reshape(1, 1, h, 1)
    return cols, rows


class YOLOLayer(nn.Module):
    """A ``[yolo]`` head.

    ``forward(x)`` with ``x`` the preceding conv's output ``(B, nA*(5+C), H, W)`` returns Darknet's activated map of the
    same shape: entries 0,1 ``sigmoid(t)*s - (s-1)/2`` (``t*s - (s-1)/2`` with ``new_coords=1``, whose conv already
    applied the logistic), entries 2,3 raw, entries 4.. sigmoid (passed through with ``new_coords=1``).
    ``decode(out, net_hw)`` returns ``(B, nA*H*W, 5+C)``: cx, cy, w, h in input pixels, objectness, class
    probabilities; row index ``anchor*H*W + row*W + col``.
    """

    box_entries = 4  # entries before objectness

    def __init__(self, config: YoloConfig) -> None:
        super().__init__()
        self.config = config
        self.num_anchors = len(config.mask)
        self.num_classes = config.classes
        self.register_buffer("anchors", torch.tensor(config.masked_anchors, dtype=torch.float32).reshape(-1, 2),
                             persistent=False)
        s = np.float32(config.scale_x_y)
        self.xy_scale = float(s)
        self.xy_bias = float(np.float32(-0.5 * (float(s) - 1)))

    @property
    def entries(self) -> int:
        return self.box_entries + 1 + self.num_classes

    def forward(self, x: Tensor) -> Tensor:
        x = x.float()  # heads decode in float32 whatever the body computes in (bf16 inference, CPU autocast)
        b, _, h, w = x.shape
        p = x.reshape(b, self.num_anchors, self.entries, h, w)
        if self.config.new_coords:
            xy = p[:, :, :2] * self.xy_scale + self.xy_bias
            out = torch.cat([xy, p[:, :, 2:]], dim=2)
        else:
            xy = torch.sigmoid(p[:, :, :2]) * self.xy_scale + self.xy_bias
            out = torch.cat([xy, p[:, :, 2:4], torch.sigmoid(p[:, :, 4:])], dim=2)
        return out.reshape(x.shape)

    def decode(self, out: Tensor, net_hw: tuple[int, int]) -> Tensor:
        b, _, h, w = out.shape
        p = out.reshape(b, self.num_anchors, self.entries, h, w)
        return self.boxes_from_maps(p[:, :, 0], p[:, :, 1], p[:, :, 2], p[:, :, 3], p[:, :, 4], p[:, :, 5:], net_hw)

    def boxes_from_maps(self, tx: Tensor, ty: Tensor, tw: Tensor, th: Tensor, obj: Tensor, cls: Tensor,
               net_hw: tuple[int, int]) -> Tensor:
        """Darknet's ``get_yolo_box`` on ``(B, nA, H, W)`` maps (``cls`` is ``(B, nA, C, H, W)``); returns
        ``(B, nA*H*W, 5+C)``: cx, cy, w, h in input pixels, objectness, classes.  Shared by decode and the loss."""
        b, na, h, w = tx.shape
        net_h, net_w = net_hw
        cols, rows = grid_offsets(h, w, tx.device, tx.dtype)
        aw = self.anchors[:, 0].to(tx.dtype).reshape(1, na, 1, 1)
        ah = self.anchors[:, 1].to(tx.dtype).reshape(1, na, 1, 1)
        x = (cols + tx) / w * net_w
        y = (rows + ty) / h * net_h
        if self.config.new_coords:
            bw, bh = tw * tw * 4 * aw, th * th * 4 * ah
        else:
            bw, bh = torch.exp(tw) * aw, torch.exp(th) * ah
        boxes = torch.stack([x, y, bw, bh, obj], dim=-1)                      # B nA H W 5
        return torch.cat([boxes, cls.permute(0, 1, 3, 4, 2)], dim=-1).reshape(b, na * h * w, -1)

    def extra_repr(self) -> str:
        c = self.config
        return (f"classes={c.classes}, mask={list(c.mask)}, scale_x_y={c.scale_x_y:g}, "
                f"new_coords={int(c.new_coords)}")


#: ``yolo_point`` -> sign of the half-size shift Darknet's get_gaussian_yolo_box adds to the predicted x,y to get
#: the center: x,y predict the left-top corner (+w/2, +h/2) or the right-bottom one (-w/2, -h/2).
YOLO_POINT_SHIFT = {"center": 0.0, "left_top": 0.5, "right_bottom": -0.5}


class GaussianYOLOLayer(YOLOLayer):
    """``[Gaussian_yolo]``: each box has a mean and a sigma per coordinate (layout ``[n][8+1+C][h][w]``).

    ``decode`` folds the uncertainty into the class probabilities as Darknet does for detections:
    ``cls * (1 - mean(sigma_x, sigma_y, sigma_w, sigma_h))``, so ``obj * cls`` is Darknet's ``prob``; with
    ``yolo_point=left_top|right_bottom`` it moves the predicted corner to the box center as Darknet does.
    """

    box_entries = 8

    def forward(self, x: Tensor) -> Tensor:
        x = x.float()  # heads decode in float32 whatever the body computes in (bf16 inference, CPU autocast)
        b, _, h, w = x.shape
        p = x.reshape(b, self.num_anchors, self.entries, h, w)
        act = torch.sigmoid(p)
        mu_x = act[:, :, 0:1] * self.xy_scale + self.xy_bias
        mu_y = act[:, :, 2:3] * self.xy_scale + self.xy_bias
        out = torch.cat([mu_x, act[:, :, 1:2], mu_y, act[:, :, 3:4], p[:, :, 4:5], act[:, :, 5:6],
                         p[:, :, 6:7], act[:, :, 7:]], dim=2)
        return out.reshape(x.shape)

    def uncertainty(self, out: Tensor) -> Tensor:
        """The four sigmas ``(B, nA*H*W, 4)`` in decode's row order (Darknet's ``uc``)."""
        b, _, h, w = out.shape
        p = out.reshape(b, self.num_anchors, self.entries, h, w)
        return p[:, :, [1, 3, 5, 7]].permute(0, 1, 3, 4, 2).reshape(b, -1, 4)

    def decode(self, out: Tensor, net_hw: tuple[int, int]) -> Tensor:
        b, _, h, w = out.shape
        p = out.reshape(b, self.num_anchors, self.entries, h, w)
        certainty = 1 - p[:, :, [1, 3, 5, 7]].mean(dim=2, keepdim=True)
        boxes = self.boxes_from_maps(p[:, :, 0], p[:, :, 2], p[:, :, 4], p[:, :, 6], p[:, :, 8],
                                     p[:, :, 9:] * certainty, net_hw)
        shift = YOLO_POINT_SHIFT[self.config.yolo_point]
        if shift:
            boxes = torch.cat([boxes[..., :2] + shift * boxes[..., 2:4], boxes[..., 2:]], dim=-1)
        return boxes
