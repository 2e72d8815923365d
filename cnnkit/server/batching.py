"""Dynamic batching, as TorchServe (batchSize, maxBatchDelay), LitServe and BentoML do it.

Requests wait in a bounded queue; one task per model takes what is waiting (up to `max_batch`, waiting at
most `max_delay` seconds for more once the first has come) and runs the batch on the server's single inference
thread. With `max_delay` 0 nothing waits on purpose: while one batch runs, the next requests queue up and go
together, so a lone request pays no delay and a crowd is batched by itself. A full queue refuses at once
(`Busy`, answered 503) instead of letting latency grow without bound.
"""
from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from typing import Any, Callable, Sequence


class Busy(Exception):
    """The queue is full."""


class Batcher:
    def __init__(self, run: Callable[[list], Sequence], executor: Executor, *, max_batch: int = 32,
                 max_delay: float = 0.0, max_queue: int = 256):
        self.run, self.executor = run, executor
        self.max_batch, self.max_delay, self.max_queue = max_batch, max_delay, max_queue
        self.queue: asyncio.Queue | None = None
        self.task: asyncio.Task | None = None
        self.batches: list[int] = []  # the size of each batch run (the last 1,000), for /models and the bench

    def start(self) -> None:
        self.queue = asyncio.Queue(self.max_queue)
        self.task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass

    async def submit(self, item: Any) -> Any:
        """The result for one item, computed in a batch with whatever else is waiting. Raises Busy when full."""
        fut = asyncio.get_running_loop().create_future()
        try:
            self.queue.put_nowait((item, fut))
        except asyncio.QueueFull:
            raise Busy(f"{self.max_queue} requests are already waiting") from None
        return await fut

    async def _take(self) -> list:
        batch = [await self.queue.get()]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_delay
        while len(batch) < self.max_batch:
            try:
                batch.append(self.queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            left = deadline - loop.time()
            if left <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self.queue.get(), left))
            except asyncio.TimeoutError:
                break
        return batch

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [(x, f) for x, f in await self._take() if not f.done()]  # a client that gave up is skipped
            if not batch:
                continue
            self.batches = (self.batches + [len(batch)])[-1000:]
            try:
                results = await loop.run_in_executor(self.executor, self.run, [x for x, _ in batch])
            except Exception as e:  # the batch's own error goes to each of its requests; the loop goes on
                for _, f in batch:
                    if not f.done():
                        f.set_exception(e)
                continue
            for (_, f), r in zip(batch, results):
                if not f.done():
                    f.set_result(r)
