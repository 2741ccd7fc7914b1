"""The batcher on its own (no HTTP, no model): bounded queue, batches in order, a failing batch fails only itself."""
from __future__ import annotations

import asyncio
import threading

import pytest

from tests.serve.serving import require_serve_extra

require_serve_extra()

from darknet_torch.serve.batcher import Batcher, QueueFull  # noqa: E402


class Recorder:
    """A runner that doubles numbers, records each batch, raises on a 13, and can be held at a gate."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate, self.entered = threading.Event(), threading.Event()
        self.gate.set()

    def __call__(self, jobs: list[int]) -> list[int]:
        self.batches.append(list(jobs))
        self.entered.set()
        assert self.gate.wait(10)
        if 13 in jobs:
            raise ValueError("unlucky batch")
        return [2 * j for j in jobs]


async def wait_for_thread(event: threading.Event) -> None:
    assert await asyncio.to_thread(event.wait, 10)


def test_queue_bound_batches_order_and_failure_isolation() -> None:
    async def scenario() -> None:
        runner = Recorder()
        batcher = Batcher(runner, max_queue=3, max_batch=2)
        batcher.start()
        try:
            runner.gate.clear()
            first = batcher.submit(1)
            await wait_for_thread(runner.entered)  # 1 is on the worker thread; the queue is empty again
            queued = [batcher.submit(j) for j in (2, 13, 4)]
            assert batcher.waiting == 3 and batcher.full
            with pytest.raises(QueueFull, match="3 requests are already waiting"):
                batcher.submit(5)
            runner.gate.set()
            assert await first == 2
            with pytest.raises(ValueError, match="unlucky batch"):  # 2 and 13 share a batch: both fail
                await queued[0]
            with pytest.raises(ValueError, match="unlucky batch"):
                await queued[1]
            assert await queued[2] == 8  # the next batch is not affected
            assert runner.batches == [[1], [2, 13], [4]]
            assert await batcher.submit(6) == 12
        finally:
            await batcher.stop()

    asyncio.run(scenario())


def test_a_cancelled_job_is_never_run_and_stop_fails_the_queue() -> None:
    async def scenario() -> None:
        runner = Recorder()
        batcher = Batcher(runner, max_queue=4, max_batch=1)
        batcher.start()
        runner.gate.clear()
        held = batcher.submit(1)
        await wait_for_thread(runner.entered)
        dropped, kept = batcher.submit(2), batcher.submit(3)
        dropped.cancel()
        runner.gate.set()
        assert (await held, await kept) == (2, 6)
        assert runner.batches == [[1], [3]]
        runner.gate.clear()
        runner.entered.clear()
        running = batcher.submit(7)
        await wait_for_thread(runner.entered)
        waiting = batcher.submit(8)
        threading.Timer(0.2, runner.gate.set).start()  # stop() waits for the running batch to finish
        await batcher.stop()
        for future in (running, waiting):
            with pytest.raises(QueueFull, match="shutting down"):
                future.result()

    asyncio.run(scenario())


def test_rejects_nonsense_limits() -> None:
    with pytest.raises(ValueError):
        Batcher(lambda jobs: jobs, max_queue=0, max_batch=1)
