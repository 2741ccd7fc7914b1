"""Detection heads: [yolo], [Gaussian_yolo], [region]."""
from darknet_torch.model.heads.region import RegionLayer
from darknet_torch.model.heads.yolo import GaussianYOLOLayer, YoloConfig, YOLOLayer

HEAD_TYPES = (YOLOLayer, RegionLayer)

__all__ = ["GaussianYOLOLayer", "HEAD_TYPES", "RegionLayer", "YOLOLayer", "YoloConfig"]
