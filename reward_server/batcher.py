"""Dynamic batching across concurrent requests on one asyncio event loop.

Requests are queued; one worker task takes the oldest and keeps adding queued ones until the
batch holds ``max_batch_size`` frames or the oldest has waited ``max_wait_ms``, then runs the
batch function in a thread executor (so the event loop keeps accepting and decoding requests
while the model runs; whatever arrives meanwhile forms the next batch).

The batch function returns one result per item, or an ``Exception`` instance for an item that
failed; if it raises as a whole, each item of that batch is retried alone, so one bad request
never fails the others. ``ray.serve.batch`` would do the same outside Serve but needs the
``ray[serve]`` web stack (starlette, fastapi), which robofume does not install.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

log = logging.getLogger(__name__)


@dataclasses.dataclass
class _Item:
    payload: Any
    size: int
    arrived: float
    future: asyncio.Future


class BatcherClosed(RuntimeError):
    """The batcher was stopped before the request ran."""


class DynamicBatcher:
    """Collects ``submit``-ted payloads into batches for ``fn(list[payload]) -> list[result]``."""

    def __init__(
        self,
        fn: Callable[[list[Any]], list[Any]],
        max_batch_size: int,
        max_wait_ms: float,
        executor: Executor | None = None,
    ):
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        self.fn = fn
        self.max_batch_size = int(max_batch_size)
        self.max_wait_s = max(0.0, float(max_wait_ms)) / 1000.0
        self.executor = executor
        self._queue: asyncio.Queue[_Item] | None = None
        self._carry: _Item | None = None
        self._task: asyncio.Task | None = None
        self.batches = 0
        self.frames = 0
        self.largest_batch = 0
        self.recent_sizes: collections.deque[int] = collections.deque(maxlen=4096)
        """Frames per model call, most recent last."""

    def start(self) -> None:
        """Start the worker on the running loop."""
        if self._task is None:
            self._queue = asyncio.Queue()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="batcher")

    async def stop(self) -> None:
        """Stop the worker; queued requests fail with BatcherClosed."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        pending = [self._carry] if self._carry else []
        while self._queue is not None and not self._queue.empty():
            pending.append(self._queue.get_nowait())
        for item in pending:
            if not item.future.done():
                item.future.set_exception(BatcherClosed("reward server is shutting down"))
        self._carry = None

    async def submit(self, payload: Any, size: int = 1) -> Any:
        """Queue ``payload`` (counting ``size`` frames) and wait for its result."""
        if self._queue is None:
            raise BatcherClosed("batcher not started")
        loop = asyncio.get_running_loop()
        item = _Item(payload, max(1, int(size)), loop.time(), loop.create_future())
        self._queue.put_nowait(item)
        return await item.future

    async def _next_batch(self) -> list[_Item]:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        first = self._carry or await self._queue.get()
        self._carry = None
        items, total = [first], first.size
        deadline = first.arrived + self.max_wait_s
        while total < self.max_batch_size:
            if self._queue.empty():
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), left)
                except TimeoutError:
                    break
            else:
                item = self._queue.get_nowait()
            if total + item.size > self.max_batch_size:
                self._carry = item  # starts the next batch
                break
            items.append(item)
            total += item.size
        return items

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = await self._next_batch()
            live = [it for it in items if not it.future.done()]  # skip cancelled requests
            if not live:
                continue
            size = sum(it.size for it in live)
            self.batches += 1
            self.frames += size
            self.largest_batch = max(self.largest_batch, size)
            self.recent_sizes.append(size)
            results = await self._call(loop, live)
            for item, result in zip(live, results, strict=True):
                if item.future.done():
                    continue
                if isinstance(result, BaseException):
                    item.future.set_exception(result)
                else:
                    item.future.set_result(result)

    async def _call(self, loop: asyncio.AbstractEventLoop, items: list[_Item]) -> list[Any]:
        payloads = [it.payload for it in items]
        try:
            results = await loop.run_in_executor(self.executor, self.fn, payloads)
            if len(results) != len(items):
                raise RuntimeError(f"batch function gave {len(results)} results for {len(items)}")
            return list(results)
        except Exception as err:
            if len(items) == 1:
                return [err]
            log.warning(
                "batch of %d failed (%s); retrying its requests one by one", len(items), err
            )
            out = []
            for item in items:
                out += await self._call(loop, [item])
            return out
