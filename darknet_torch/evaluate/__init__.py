"""Evaluation: Darknet's ``detector map`` (:func:`evaluate`) and COCO metrics of the same detections."""
from darknet_torch.evaluate.ap import MapResult, compute_map, expand_detections, format_map_report
from darknet_torch.evaluate.coco import CocoStats, coco_evaluate
from darknet_torch.evaluate.runner import (DatasetDetections, EvalReport, LabelReport, collect_detections, evaluate,
                                           score_detections)

__all__ = [
    "CocoStats", "DatasetDetections", "EvalReport", "LabelReport", "MapResult", "coco_evaluate",
    "collect_detections", "compute_map", "evaluate", "expand_detections", "format_map_report", "score_detections",
]
