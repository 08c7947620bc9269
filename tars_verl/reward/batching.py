"""Coalesce concurrent single-item calls into batched calls.

verl's reward loop calls the reward manager once per sample, concurrently (``asyncio.gather`` in a
``RewardLoopWorker``, or one call per finished rollout when rewards stream). Scorers are much faster
per item in batches, so each scorer sits behind a :class:`MicroBatcher`: ``submit`` parks the item,
and the batch goes out when it reaches ``max_batch_size`` or ``max_wait_ms`` after its first item.
Several batches may be in flight at once; the scorer bounds its own concurrency. ``aclose`` cancels what is
still parked or in flight (its callers get ``CancelledError``) before the event loop is closed.

Example:
    >>> async def double(xs):            # one call for many items
    ...     return [2 * x for x in xs]
    >>> async def main():
    ...     b = MicroBatcher(double, max_batch_size=8, max_wait_ms=2)
    ...     return await asyncio.gather(*(b.submit(i) for i in range(5)))
    >>> asyncio.run(main())
    [0, 2, 4, 6, 8]
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")


class MicroBatcher(Generic[In, Out]):
    def __init__(
        self, fn: Callable[[list[In]], Awaitable[list[Out]]], max_batch_size: int = 32, max_wait_ms: float = 5.0
    ):
        self.fn = fn
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000.0
        self._pending: list[tuple[In, asyncio.Future]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task] = set()

    async def submit(self, item: In) -> Out:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future = loop.create_future()
        self._pending.append((item, fut))
        if len(self._pending) >= self.max_batch_size:
            self._flush()
        elif self._timer is None:
            self._timer = loop.call_later(self.max_wait_s, self._flush)
        return await fut

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._pending:
            batch, self._pending = self._pending[: self.max_batch_size], self._pending[self.max_batch_size :]
            task = asyncio.get_running_loop().create_task(self._run(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[tuple[In, asyncio.Future]]) -> None:
        try:
            outputs = await self.fn([item for item, _ in batch])
            if len(outputs) != len(batch):
                raise RuntimeError(f"batched call returned {len(outputs)} results for {len(batch)} items")
        except asyncio.CancelledError:
            for _, fut in batch:
                fut.cancel()
            raise
        except Exception as err:  # noqa: BLE001 - every waiter gets the error
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(err)
            return
        # Not BaseException: a GeneratorExit means the task is being destroyed with its event loop already
        # closed (never awaited to the end); touching the waiters' futures then raises "Event loop is closed".
        for (_, fut), out in zip(batch, outputs):
            if not fut.done():
                fut.set_result(out)

    async def aclose(self) -> None:
        """Cancel the parked items and the batches in flight, and wait until they have stopped."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, self._pending = self._pending, []
        for _, fut in pending:
            fut.cancel()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
