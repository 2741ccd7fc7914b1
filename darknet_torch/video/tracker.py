"""A small IoU tracker (SORT without the Kalman filter): a persistent id per object across frames.

Each frame, every track predicts its box by moving it with its last velocity (centre and size change per frame);
the frame's boxes and the predictions are paired greedily, highest IoU first, only within the same class and only
above ``min_iou``.  A paired track takes the new box; an unpaired box starts a new track with the next id (1, 2, ...,
never reused); a track not seen for more than ``max_age`` frames is dropped.  This is what Darknet's ``track_id``
gives in ``demo`` (ids in the JSON and drawn on the boxes), with plain geometry instead of Darknet's embeddings.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from darknet_torch.detect.predictor import Detection
from darknet_torch.ops.boxes import box_iou

Box = tuple[float, float, float, float]  # centre x, centre y, width, height (relative to the image)


@dataclass
class Track:
    track_id: int
    class_id: int
    box: Box
    velocity: Box = (0.0, 0.0, 0.0, 0.0)
    missed: int = 0  # frames since the track was last paired with a box

    def predicted(self) -> Box:
        steps = self.missed + 1
        return tuple(b + steps * v for b, v in zip(self.box, self.velocity))  # type: ignore[return-value]


class IoUTracker:
    """Assigns track ids to each frame's boxes (call :meth:`update` once per frame, in frame order)."""

    def __init__(self, min_iou: float = 0.3, max_age: int = 10) -> None:
        self.min_iou, self.max_age = min_iou, max_age
        self.tracks: list[Track] = []
        self.next_id = 1

    def update(self, boxes: Sequence[Detection]) -> list[int]:
        """Track ids for ``boxes`` (one :class:`Detection` per object: its best class), in the same order."""
        ious = box_iou(torch.tensor([track.predicted() for track in self.tracks]).reshape(-1, 4),
                       torch.tensor([_box(det) for det in boxes]).reshape(-1, 4)).tolist()
        pairs = sorted(((ious[t][d], t, d) for t, track in enumerate(self.tracks)
                        for d, det in enumerate(boxes) if det.class_id == track.class_id), key=lambda p: -p[0])
        ids: list[int | None] = [None] * len(boxes)
        paired_tracks: set[int] = set()
        for iou, t, d in pairs:
            if iou < self.min_iou:
                break
            if t in paired_tracks or ids[d] is not None:
                continue
            paired_tracks.add(t)
            ids[d] = self._follow(self.tracks[t], _box(boxes[d]))
        for t, track in enumerate(self.tracks):
            if t not in paired_tracks:
                track.missed += 1
        self.tracks = [track for track in self.tracks if track.missed <= self.max_age]
        for d, det in enumerate(boxes):
            if ids[d] is None:
                self.tracks.append(Track(self.next_id, det.class_id, _box(det)))
                ids[d] = self.next_id
                self.next_id += 1
        return ids  # type: ignore[return-value]

    @staticmethod
    def _follow(track: Track, box: Box) -> int:
        steps = track.missed + 1
        track.velocity = tuple((new - old) / steps for new, old in zip(box, track.box))  # type: ignore[assignment]
        track.box, track.missed = box, 0
        return track.track_id


def _box(det: Detection) -> Box:
    return det.x, det.y, det.w, det.h
