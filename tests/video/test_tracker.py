"""The IoU tracker: ids persist for moving objects, new objects get new ids, lost tracks expire."""
from __future__ import annotations

from darknet_torch.detect.predictor import Detection
from darknet_torch.video.tracker import IoUTracker


def box(x: float, y: float = 0.5, w: float = 0.2, h: float = 0.2, class_id: int = 0) -> Detection:
    return Detection(class_id, str(class_id), 0.9, x, y, w, h)


def test_id_persists_for_a_moving_box_and_new_objects_get_new_ids():
    tracker = IoUTracker()
    ids = [tracker.update([box(0.2 + 0.03 * i)]) for i in range(10)]
    assert ids == [[1]] * 10
    # a second object appears; the first keeps its id, the order of the input is the order of the ids
    assert tracker.update([box(0.8, 0.2), box(0.5)]) == [2, 1]


def test_occluded_box_is_found_again_where_its_velocity_takes_it():
    tracker = IoUTracker(min_iou=0.5)
    assert [tracker.update([box(0.1 + 0.05 * i)]) for i in range(4)] == [[1]] * 4
    tracker.update([])
    tracker.update([])
    # 3 frames later at the same speed: IoU with the last seen box is 0.14, with the predicted one 1
    assert tracker.update([box(0.1 + 0.05 * 6)]) == [1]


def test_classes_are_not_mixed():
    tracker = IoUTracker()
    assert tracker.update([box(0.5, class_id=0)]) == [1]
    assert tracker.update([box(0.5, class_id=1)]) == [2]


def test_tracks_expire_after_max_age_missed_frames_and_ids_are_never_reused():
    tracker = IoUTracker(max_age=2)
    assert tracker.update([box(0.5)]) == [1]
    tracker.update([])
    tracker.update([])
    assert tracker.update([box(0.5)]) == [1]  # missed 2 frames: still alive
    for _ in range(3):
        tracker.update([])
    assert tracker.update([box(0.5)]) == [2]  # missed 3 > max_age: a new id
    assert [t.track_id for t in tracker.tracks] == [2]


def test_one_box_takes_one_track_best_iou_first():
    tracker = IoUTracker()
    tracker.update([box(0.3), box(0.6)])
    assert tracker.update([box(0.58), box(0.31)]) == [2, 1]
    assert tracker.update([]) == []
