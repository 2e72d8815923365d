"""The batcher on its own: batches form from what waits, a full queue refuses at once, an error reaches each of
its batch's requests and the loop goes on."""
import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from cnnkit.server.batching import Batcher, Busy


def test_batches_queue_bound_and_errors():
    gate = threading.Event()
    seen: list[list] = []

    def run(items):
        gate.wait(10)  # held until the test lets go: requests pile up meanwhile
        seen.append(list(items))
        if "boom" in items:
            raise ValueError("bad batch")
        return [x * 10 for x in items]

    async def main():
        b = Batcher(run, ThreadPoolExecutor(1), max_batch=4, max_queue=3)
        b.start()
        first = asyncio.ensure_future(b.submit(1))
        await asyncio.sleep(0.05)                     # 1 is running (held); the queue is empty
        waiting = [asyncio.ensure_future(b.submit(x)) for x in (2, 3, 4)]
        await asyncio.sleep(0.05)
        with pytest.raises(Busy):                     # 3 wait: the 4th is refused at once
            await b.submit(5)
        gate.set()
        assert await first == 10 and [await w for w in waiting] == [20, 30, 40]
        bad = [asyncio.ensure_future(b.submit(x)) for x in ("boom", 7)]
        results = await asyncio.gather(*bad, return_exceptions=True)
        assert all(isinstance(r, ValueError) for r in results)
        assert await b.submit(8) == 80                # the loop survived the failed batch
        await b.stop()
        return b.batches

    sizes = asyncio.run(main())
    assert seen[:2] == [[1], [2, 3, 4]] and sizes[:2] == [1, 3]
