"""Serialised, micro-batched access to one model: a bounded queue in front of a single worker thread.

Why this shape: the model is CPU-bound and already uses every core through torch's threads, so running requests in
parallel would only oversubscribe the CPU.  One thread owns the model; requests wait in a bounded queue (a full
queue is refused at once, so load never piles up unboundedly), and whatever has queued up while the model was busy
is taken as one batch (at most ``max_batch``), which costs no extra latency when the service is idle.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Generic, Sequence, TypeVar

log = logging.getLogger(__name__)

Job = TypeVar("Job")
Result = TypeVar("Result")


class QueueFull(Exception):
    """The queue holds ``max_queue`` waiting requests; the caller should answer 503."""


@dataclass
class _Pending(Generic[Job]):
    job: Job
    future: asyncio.Future


class Batcher(Generic[Job, Result]):
    """Feeds queued jobs, in batches, to ``runner`` on one dedicated thread.

    ``runner(jobs) -> results`` (same length and order) runs on the worker thread; an exception it raises is given
    to every job of that batch.  ``max_queue`` counts waiting jobs, not the batch being run.  ``batch_wait`` (s)
    optionally waits that long for a batch to fill; 0 takes only what is already queued.
    Create and use it inside a running event loop: :meth:`start`, then :meth:`submit`, then :meth:`stop`.
    """

    def __init__(self, runner: Callable[[Sequence[Job]], Sequence[Result]], max_queue: int, max_batch: int,
                 batch_wait: float = 0.0) -> None:
        if max_queue < 1 or max_batch < 1 or batch_wait < 0:
            raise ValueError("max_queue and max_batch must be >= 1 and batch_wait >= 0")
        self.runner, self.max_queue, self.max_batch, self.batch_wait = runner, max_queue, max_batch, batch_wait
        self._queue: asyncio.Queue[_Pending[Job]] = asyncio.Queue(maxsize=max_queue)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self._task: asyncio.Task | None = None
        self.running = 0  # jobs in the batch on the worker thread now

    @property
    def waiting(self) -> int:
        """Jobs queued, not yet taken by the worker."""
        return self._queue.qsize()

    @property
    def full(self) -> bool:
        return self._queue.full()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._serve(), name="batcher")

    async def stop(self) -> None:
        """Stop taking batches, fail the jobs still queued, and wait for the worker thread to finish."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        while not self._queue.empty():
            _fail([self._queue.get_nowait()], QueueFull("the service is shutting down"))
        self._executor.shutdown(wait=True)

    def submit(self, job: Job) -> asyncio.Future:
        """Queue ``job``; the returned future gets its result.  Raises :class:`QueueFull` without waiting.

        Cancelling the future (e.g. ``asyncio.wait_for`` timing out) drops the job if it has not started yet.
        """
        future = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait(_Pending(job, future))
        except asyncio.QueueFull:
            raise QueueFull(f"{self.max_queue} requests are already waiting") from None
        return future

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._take_batch()
            if not batch:
                continue
            self.running = len(batch)
            try:
                results = await loop.run_in_executor(self._executor, self.runner, [p.job for p in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"runner gave {len(results)} results for {len(batch)} jobs")
            except asyncio.CancelledError:
                _fail(batch, QueueFull("the service is shutting down"))
                raise
            except Exception as exc:  # a bug in the runner must not stop the service: fail this batch only
                log.exception("batch of %d failed", len(batch))
                _fail(batch, exc)
                continue
            finally:
                self.running = 0
            for pending, result in zip(batch, results):
                if not pending.future.done():
                    pending.future.set_result(result)

    async def _take_batch(self) -> list[_Pending[Job]]:
        """The next job and whatever else is queued (up to ``max_batch``), skipping jobs cancelled while waiting."""
        batch = [await self._queue.get()]
        deadline = asyncio.get_running_loop().time() + self.batch_wait
        while len(batch) < self.max_batch:
            if not self._queue.empty():
                batch.append(self._queue.get_nowait())
                continue
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except TimeoutError:
                break
        return [p for p in batch if not p.future.done()]


def _fail(batch: Sequence[_Pending], exc: BaseException) -> None:
    for pending in batch:
        if not pending.future.done():
            pending.future.set_exception(exc)
