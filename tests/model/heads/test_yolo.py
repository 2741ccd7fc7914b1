"""``[Gaussian_yolo] yolo_point``: Darknet's get_gaussian_yolo_box moves a predicted corner to the box center."""
from __future__ import annotations

import pytest
import torch

from darknet_torch import CfgError, Darknet
from darknet_torch.config import parse_cfg_text, type_sections


def _gaussian(point: str) -> Darknet:
    text = (f"[net]\nwidth=32\nheight=32\nchannels=3\n[convolutional]\nfilters=11\nsize=1\nactivation=linear\n"
            f"[Gaussian_yolo]\nmask=0\nanchors=10,14\nclasses=2\nnum=1\nyolo_point={point}\n")
    torch.manual_seed(1)
    return Darknet(type_sections(parse_cfg_text(text, "g.cfg"))).eval()


@pytest.mark.parametrize("point,sign", [("left_top", 1.0), ("right_bottom", -1.0)])
def test_yolo_point_shifts_the_center_by_half_the_box(point, sign):
    """x,y predict the left-top (center = x + w/2, y + h/2) or right-bottom corner (center = x - w/2, y - h/2)."""
    x = torch.rand(1, 3, 32, 32)
    center, shifted = _gaussian("center"), _gaussian(point)
    head_c, head_s = center.module_list[-1], shifted.module_list[-1]
    with torch.no_grad():
        out = center.module_list[0](x)
        dec_c = head_c.decode(head_c(out), (32, 32))
        dec_s = head_s.decode(head_s(out), (32, 32))
    torch.testing.assert_close(dec_s[..., :2], dec_c[..., :2] + sign * dec_c[..., 2:4] / 2)
    assert torch.equal(dec_s[..., 2:], dec_c[..., 2:])


def test_unknown_yolo_point_is_an_error_naming_the_key():
    with pytest.raises(CfgError, match=r"g.cfg:14 \[Gaussian_yolo\] yolo_point: yolo_point=middle must be center"):
        _gaussian("middle")
