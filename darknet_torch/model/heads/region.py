"""``[region]`` head (YOLOv2): logistic objectness, softmax classes, anchors in grid units."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from darknet_torch.model.heads.yolo import grid_offsets


class RegionLayer(nn.Module):
    """A ``[region]`` head.

    ``forward`` keeps the conv layout ``(B, n*(5+C), H, W)`` with entry 4 sigmoid and classes softmax-ed (entries 0..3
    raw); Darknet's CPU build stores the same values transposed, see :meth:`darknet_layout`.  ``decode`` gives
    ``(B, n*H*W, 5+C)`` like the yolo heads.  Darknet turns *every* cell and anchor into a detection (objectness field 1);
    thresholding ``obj*cls`` gives the same survivors.
    """

    def __init__(self, num: int, classes: int, anchors: tuple[tuple[float, float], ...], softmax: bool) -> None:
        super().__init__()
        self.num_anchors, self.num_classes, self.softmax = num, classes, softmax
        self.register_buffer("anchors", torch.tensor(anchors, dtype=torch.float32).reshape(-1, 2), persistent=False)

    @property
    def entries(self) -> int:
        return 5 + self.num_classes

    def forward(self, x: Tensor) -> Tensor:
        x = x.float()  # heads decode in float32 whatever the body computes in (bf16 inference, CPU autocast)
        b, _, h, w = x.shape
        p = x.reshape(b, self.num_anchors, self.entries, h, w)
        cls = torch.softmax(p[:, :, 5:], dim=2) if self.softmax else p[:, :, 5:]
        return torch.cat([p[:, :, :4], torch.sigmoid(p[:, :, 4:5]), cls], dim=2).reshape(x.shape)

    def darknet_layout(self, out: Tensor) -> Tensor:
        """Darknet's dumped ``l.output``: ``[h*w][n][5+C]`` per sample, flattened."""
        b, _, h, w = out.shape
        p = out.reshape(b, self.num_anchors, self.entries, h, w)
        return p.permute(0, 3, 4, 1, 2).reshape(b, -1)

    def decode(self, out: Tensor, net_hw: tuple[int, int]) -> Tensor:
        b, _, h, w = out.shape
        net_h, net_w = net_hw
        p = out.reshape(b, self.num_anchors, self.entries, h, w)
        cols, rows = grid_offsets(h, w, out.device, out.dtype)
        aw = self.anchors[:, 0].to(out.dtype).reshape(1, -1, 1, 1)
        ah = self.anchors[:, 1].to(out.dtype).reshape(1, -1, 1, 1)
        x = (cols + torch.sigmoid(p[:, :, 0])) / w * net_w
        y = (rows + torch.sigmoid(p[:, :, 1])) / h * net_h
        bw = torch.exp(p[:, :, 2]) * aw / w * net_w
        bh = torch.exp(p[:, :, 3]) * ah / h * net_h
        boxes = torch.stack([x, y, bw, bh, p[:, :, 4]], dim=-1)
        return torch.cat([boxes, p[:, :, 5:].permute(0, 1, 3, 4, 2)], dim=-1).reshape(b, -1, self.entries)
