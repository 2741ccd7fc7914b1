"""Box geometry and non-maximum suppression (Darknet conventions: xywh = centre and size)."""
from darknet_torch.ops.boxes import box_iou, ciou, diou, diou_penalty, giou, iou, xywh_to_xyxy, xyxy_to_xywh
from darknet_torch.ops.nms import (NMS_KINDS, apply_nms, darknet_array_order, darknet_nms, diounms_sort, do_nms_sort,
                                  nms_per_class)

__all__ = [
    "xywh_to_xyxy",
    "xyxy_to_xywh",
    "box_iou",
    "iou",
    "giou",
    "diou_penalty",
    "diou",
    "ciou",
    "NMS_KINDS",
    "do_nms_sort",
    "diounms_sort",
    "nms_per_class",
    "apply_nms",
    "darknet_array_order",
    "darknet_nms",
]
