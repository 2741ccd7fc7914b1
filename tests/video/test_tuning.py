"""The forward's thread count: each candidate tried on alternating batches, the faster one kept."""
from __future__ import annotations

import torch

from darknet_torch.video import tuning
from darknet_torch.video.tuning import ForwardThreads, candidates, differs_on_other_counts


def test_candidates_are_all_cores_and_one_fewer():
    assert candidates(2) == [2, 1] and candidates(8) == [8, 7] and candidates(1) == [1]


def run(choice: ForwardThreads, seconds: dict[int, float], batches: int, monkeypatch) -> list[int]:
    """Run ``batches`` batches of 4 frames where a batch on n threads takes ``seconds[n]``; the threads used."""
    return run_changing(choice, lambda index, threads: seconds[threads], batches, monkeypatch)


def test_alternates_after_the_warm_up_then_keeps_the_faster(monkeypatch):
    choice = ForwardThreads([2, 1], trials=2, warmup=1)
    used = run(choice, {2: 0.2, 1: 0.1}, 8, monkeypatch)
    assert used == [2, 2, 1, 2, 1, 1, 1, 1] and choice.chosen == 1
    choice = ForwardThreads([2, 1], trials=2, warmup=1)
    assert run(choice, {2: 0.1, 1: 0.2}, 8, monkeypatch)[5:] == [2, 2, 2] and choice.chosen == 2


def test_one_candidate_needs_no_trial(monkeypatch):
    choice = ForwardThreads([1, 1])
    assert run(choice, {1: 0.1}, 3, monkeypatch) == [1, 1, 1] and choice.chosen == 1


def run_changing(choice: ForwardThreads, seconds, batches: int, monkeypatch) -> list[int]:
    """Like :func:`run` with ``seconds(batch_index, threads)``: a machine whose load changes."""
    clock = [0.0]
    monkeypatch.setattr(tuning.time, "perf_counter", lambda: clock[0])
    choice._last = 0.0
    used = []
    for index in range(batches):
        used.append(choice.threads())
        clock[0] += seconds(index, used[-1])
        choice.done(4)
    return used


def test_a_choice_that_slows_down_is_tried_again(monkeypatch):
    """A neighbour takes a core at batch 20: 2 threads become 20x slower, 1 thread 2x; the choice follows."""
    choice = ForwardThreads([2, 1], trials=2, warmup=1, retrial_every=1000)

    def loaded(index: int, threads: int) -> float:
        slowdown = (20 if threads == 2 else 2) if index >= 20 else 1
        return (0.1 if threads == 2 else 0.15) * slowdown

    used = run_changing(choice, loaded, 40, monkeypatch)
    assert used[5:20] == [2] * 15  # chosen after the first trial
    assert choice.trials_run == 2 and choice.chosen == 1 and used[-10:] == [1] * 10
    assert used[20:27].count(2) <= 4  # three slow batches noticed, then the trial's two on each count


def test_the_trial_is_repeated_after_retrial_every_batches(monkeypatch):
    """A load that goes away is noticed by the periodic trial: 1 thread chosen under load, then 2 again."""
    choice = ForwardThreads([2, 1], trials=2, warmup=1, retrial_every=10)

    def quiet_later(index: int, threads: int) -> float:
        return 0.1 if threads == 1 else (0.3 if index < 15 else 0.05)

    used = run_changing(choice, quiet_later, 40, monkeypatch)
    assert used[5:15] == [1] * 10 and choice.chosen == 2 and used[-5:] == [2] * 5 and choice.trials_run >= 2


def test_a_steady_choice_keeps_its_count_between_trials(monkeypatch):
    choice = ForwardThreads([2, 1], trials=2, warmup=1, retrial_every=20)
    used = run(choice, {2: 0.1, 1: 0.2}, 55, monkeypatch)  # trials at batches 1, 25 and 49
    assert used.count(1) == 2 * choice.trials_run and choice.trials_run == 3 and choice.chosen == 2


def test_outputs_are_compared_on_the_other_counts_and_the_count_comes_back():
    inputs = torch.ones(2, 3)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        same = lambda x: x * 2  # noqa: E731
        shifted = lambda x: x * 2 + torch.get_num_threads()  # noqa: E731
        assert not differs_on_other_counts(same, inputs, same(inputs), [1, 3])
        assert differs_on_other_counts(shifted, inputs, shifted(inputs), [1])
        assert not differs_on_other_counts(shifted, inputs, shifted(inputs), [2])
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)


def test_keep_ends_the_trial(monkeypatch):
    choice = ForwardThreads([2, 1], trials=2, warmup=1)
    choice.keep(2)
    assert run(choice, {2: 0.2, 1: 0.1}, 6, monkeypatch) == [2] * 6 and choice.chosen == 2
