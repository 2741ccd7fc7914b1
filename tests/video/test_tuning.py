"""The forward's thread count: each candidate tried on alternating batches, the faster one kept."""
from __future__ import annotations

from darknet_torch.video import tuning
from darknet_torch.video.tuning import ForwardThreads, candidates


def test_candidates_are_all_cores_and_one_fewer():
    assert candidates(2) == [2, 1] and candidates(8) == [8, 7] and candidates(1) == [1]


def run(choice: ForwardThreads, seconds: dict[int, float], batches: int, monkeypatch) -> list[int]:
    """Run ``batches`` batches of 4 frames where a batch on n threads takes ``seconds[n]``; the threads used."""
    clock = [0.0]
    monkeypatch.setattr(tuning.time, "perf_counter", lambda: clock[0])
    choice._last = 0.0
    used = []
    for _ in range(batches):
        used.append(choice.threads())
        clock[0] += seconds[used[-1]]
        choice.done(4)
    return used


def test_alternates_after_the_warm_up_then_keeps_the_faster(monkeypatch):
    choice = ForwardThreads([2, 1], trials=2, warmup=1)
    used = run(choice, {2: 0.2, 1: 0.1}, 8, monkeypatch)
    assert used == [2, 2, 1, 2, 1, 1, 1, 1] and choice.chosen == 1
    choice = ForwardThreads([2, 1], trials=2, warmup=1)
    assert run(choice, {2: 0.1, 1: 0.2}, 8, monkeypatch)[5:] == [2, 2, 2] and choice.chosen == 2


def test_one_candidate_needs_no_trial(monkeypatch):
    choice = ForwardThreads([1, 1])
    assert run(choice, {1: 0.1}, 3, monkeypatch) == [1, 1, 1] and choice.chosen == 1
