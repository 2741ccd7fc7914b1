"""Darknet's older layers: ``[local]`` (unshared convolution), ``[crop]``, ``[cost]``, ``[detection]`` (YOLOv1) and
``[contrastive]``, in their inference form (AlexeyAB src/local_layer.c, crop_layer.c, cost_layer.c,
detection_layer.c, contrastive_layer.c)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from darknet_torch.model.activations import Activation


class LocalLayer(nn.Module):
    """``[local]``: a convolution whose kernel and bias differ at every output location (no weight sharing).

    ``forward_local_layer`` runs im2col with ``pad`` pixels of zero padding and, per output location ``j``, multiplies
    that location's ``filters x (c*size*size)`` matrix by the column; the bias has one value per output element.
    ``.weights`` order: biases ``[filters][out_h*out_w]``, then weights ``[out_h*out_w][filters][c*size*size]``.
    """

    def __init__(self, in_channels: int, filters: int, size: int, stride: int, pad: int,
                 out_hw: tuple[int, int], activation: str) -> None:
        super().__init__()
        self.size, self.stride, self.pad, self.out_hw = size, stride, pad, out_hw
        locations = out_hw[0] * out_hw[1]
        k = in_channels * size * size
        # make_local_layer's initialisation: uniform in +-sqrt(2/(size*size*c)), biases 0.
        scale = math.sqrt(2.0 / k)
        self.weight = nn.Parameter(torch.empty(locations, filters, k).uniform_(-scale, scale))
        self.bias = nn.Parameter(torch.zeros(filters, locations))
        self.act = Activation(activation)

    def forward(self, x: Tensor) -> Tensor:
        cols = F.unfold(x, self.size, padding=self.pad, stride=self.stride)  # (B, c*size*size, locations)
        out = torch.einsum("lnk,bkl->bnl", self.weight.to(cols.dtype), cols) + self.bias.to(cols.dtype)
        return self.act(out.reshape(x.shape[0], -1, *self.out_hw))

    def darknet_params(self) -> list[Tensor]:
        return [self.bias, self.weight]


class CropLayer(nn.Module):
    """``[crop]`` at inference: the centre ``crop_height x crop_width`` window, ``2x - 1`` unless ``noadjust=1``.

    Darknet crops at ``((h - crop_h)/2, (w - crop_w)/2)`` when not training; its training-time random offsets and
    flips (and the unused angle/saturation/exposure keys) are not reproduced.
    """

    def __init__(self, crop_hw: tuple[int, int], offset: tuple[int, int], noadjust: bool) -> None:
        super().__init__()
        self.crop_hw, self.offset = crop_hw, offset
        self.scale, self.shift = (1.0, 0.0) if noadjust else (2.0, -1.0)

    def forward(self, x: Tensor) -> Tensor:
        (h, w), (dy, dx) = self.crop_hw, self.offset
        window = x[:, :, dy: dy + h, dx: dx + w]
        return window if self.scale == 1.0 else window * self.scale + self.shift


class CostLayer(nn.Module):
    """``[cost]``: a training loss; at inference Darknet's ``get_network_output`` skips it, so it passes its input on."""

    def forward(self, x: Tensor) -> Tensor:
        return x


class ContrastiveLayer(nn.Module):
    """``[contrastive]``: a training loss plus tracking embeddings; it never changes the detections, so at
    inference it passes its input on (Darknet's track ids are not computed)."""

    def forward(self, x: Tensor) -> Tensor:
        return x


class DetectionLayer(nn.Module):
    """``[detection]`` (YOLOv1) on the flat ``[connected]`` output of ``side*side*((1+coords)*num + classes)`` values.

    Layout per image: class scores ``[side*side][classes]``, then confidences ``[side*side][num]``, then boxes
    ``[side*side][num][coords]``.  With ``softmax=1`` the classes of each cell are softmax-ed and everything after
    them goes through the logistic; otherwise the input is passed on (as forward_detection_layer at inference).
    """

    def __init__(self, side: int, num: int, classes: int, coords: int, softmax: bool, sqrt: bool) -> None:
        super().__init__()
        self.side, self.num, self.classes, self.coords = side, num, classes, coords
        self.softmax, self.sqrt = softmax, sqrt

    def forward(self, x: Tensor) -> Tensor:
        if not self.softmax:
            return x
        flat = x.flatten(1)
        cells = self.side * self.side
        scores = torch.softmax(flat[:, : cells * self.classes].reshape(-1, cells, self.classes), dim=2)
        rest = torch.sigmoid(flat[:, cells * self.classes:])
        return torch.cat([scores.flatten(1), rest], dim=1).reshape(x.shape)

    def boxes(self, out: Tensor, net_hw: tuple[int, int]) -> Tensor:
        """Darknet's ``get_detection_detections`` before thresholding: ``(B, side*side*num, 5 + classes)`` rows of
        cx, cy, w, h in input pixels, the confidence ``scale``, and ``scale * class score`` per class; rows in
        Darknet's order (cell row-major, then box).  Needs ``coords >= 4``."""
        net_h, net_w = net_hw
        b, s, n, c = out.shape[0], self.side, self.num, self.classes
        flat = out.flatten(1)
        cells = s * s
        scores = flat[:, : cells * c].reshape(b, cells, 1, c)
        scale = flat[:, cells * c: cells * (c + n)].reshape(b, cells, n)
        coords = flat[:, cells * (c + n):].reshape(b, cells, n, self.coords)
        index = torch.arange(cells, device=out.device)
        col = (index % s).to(out.dtype).reshape(1, cells, 1)
        row = torch.div(index, s, rounding_mode="floor").to(out.dtype).reshape(1, cells, 1)
        power = 2 if self.sqrt else 1
        x = (coords[..., 0] + col) / s * net_w
        y = (coords[..., 1] + row) / s * net_h
        w = coords[..., 2] ** power * net_w
        h = coords[..., 3] ** power * net_h
        probs = scale[..., None] * scores
        rows = torch.cat([torch.stack([x, y, w, h, scale], dim=-1), probs], dim=-1)
        return rows.reshape(b, cells * n, 5 + c)
