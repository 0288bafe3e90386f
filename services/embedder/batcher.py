"""Dynamic micro-batching: concurrent requests are gathered into one forward pass.

Requests submit a list of items of one kind ("text" or "image"). A single consumer task takes the
oldest waiting request, then keeps adding requests of the same kind until the batch holds
`max_batch` items or `max_wait_ms` has passed since it started gathering, and runs the batch in one
worker thread (the model is used by one thread at a time; the event loop never blocks on it). A
request larger than `max_batch` is split into chunks that batch like separate requests. With
`max_wait_ms` 0 (the default) nothing waits: a batch is what is queued when the model is free, so
a lone query runs at once and requests that arrive during a forward pass share the next. The queue
is bounded in items: when it is full, `submit` raises `Saturated` at once (503 + Retry-After).

The worker thread is the process's one torch thread: `call` runs other model work (loading) on it.
PyTorch's CPU build parallelises with OpenMP, which keeps one team of worker threads per thread that
starts parallel work; a second such thread leaves more OpenMP threads than cores, and libgomp then
hands work over through the kernel instead of spinning: a single text took 40% longer (69 -> 40
texts/s with the ViT-B/32 shapes on 2 cores) once the model had been loaded on another thread.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from services.common.errors import DependencyUnavailable

log = logging.getLogger(__name__)

RunBatch = Callable[[str, list], Sequence[Any]]
BatchObserver = Callable[[str, int, float], None]


class Saturated(DependencyUnavailable):
    """The embedder's queue is full; the caller should retry shortly."""

    code = "embedder_busy"


class ModelNotReady(DependencyUnavailable):
    code = "model_loading"


@dataclass
class _Chunk:
    kind: str
    items: list
    future: asyncio.Future = field(repr=False)


class MicroBatcher:
    def __init__(self, run_batch: RunBatch, *, max_batch: int, max_wait_ms: float, max_queue: int,
                 on_batch: BatchObserver | None = None, executor: ThreadPoolExecutor | None = None):
        """`executor`: a one-thread pool to run batches on instead of a pool of the batcher's own (it
        is then the caller's to shut down), so that one thread can serve several batchers in turn."""
        self._run_batch = run_batch
        self._max_batch = max_batch
        self._max_wait = max_wait_ms / 1000.0
        self._max_queue = max_queue
        self._on_batch = on_batch
        self._queue: asyncio.Queue[_Chunk] | None = None
        # A chunk of another kind met while gathering waits here and starts the next batch.
        self._held: deque[_Chunk] = deque()
        self._queued_items = 0
        self._consumer: asyncio.Task | None = None
        self._own_executor = executor is None
        self._executor: ThreadPoolExecutor | None = executor

    @property
    def queued_items(self) -> int:
        return self._queued_items

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self._consumer = asyncio.create_task(self._consume(), name="micro-batcher")

    async def stop(self) -> None:
        if self._consumer is not None:
            self._consumer.cancel()
            try:
                await self._consumer
            except asyncio.CancelledError:
                pass
            self._consumer = None
        if self._queue is not None:
            pending = list(self._held)
            while not self._queue.empty():
                pending.append(self._queue.get_nowait())
            for chunk in pending:
                if not chunk.future.done():
                    chunk.future.set_exception(DependencyUnavailable("The embedder is shutting down."))
        if self._executor is not None and self._own_executor:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    async def call(self, function: Callable[..., Any], *args: Any) -> Any:
        """Run `function(*args)` on the model thread, between batches."""
        if self._executor is None:
            raise ModelNotReady("The embedder is not running; try again shortly.", retry_after=2)
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    async def submit(self, kind: str, items: list) -> list:
        """Embed `items` (all of one kind) with whatever else is waiting; results in the same order."""
        if not items:
            return []
        if self._queue is None or self._consumer is None or self._consumer.done():
            raise ModelNotReady("The embedder is not running; try again shortly.", retry_after=2)
        if self._queued_items + len(items) > self._max_queue:
            raise Saturated(
                f"The embedder is saturated ({self._queued_items} items waiting, limit {self._max_queue}); "
                "retry shortly.", retry_after=1)
        loop = asyncio.get_running_loop()
        chunks = [_Chunk(kind, items[start:start + self._max_batch], loop.create_future())
                  for start in range(0, len(items), self._max_batch)]
        self._queued_items += len(items)
        for chunk in chunks:
            self._queue.put_nowait(chunk)
        # A cancelled caller (client gone) cancels its chunks' futures; the consumer then skips them.
        results = await asyncio.gather(*(chunk.future for chunk in chunks))
        return [result for chunk_results in results for result in chunk_results]

    async def _next_chunk(self, timeout: float | None) -> _Chunk | None:
        if self._held:
            return self._held.popleft()
        assert self._queue is not None
        if timeout is None:
            return await self._queue.get()
        if timeout <= 0:
            try:
                return self._queue.get_nowait()
            except asyncio.QueueEmpty:
                return None
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None

    async def _gather(self) -> list[_Chunk]:
        first = await self._next_chunk(None)
        batch, size = [first], len(first.items)
        deadline = time.monotonic() + self._max_wait
        while size < self._max_batch:
            chunk = await self._next_chunk(deadline - time.monotonic())
            if chunk is None:
                break
            if chunk.kind != first.kind or size + len(chunk.items) > self._max_batch:
                # Keep order: this chunk opens the next batch.
                self._held.appendleft(chunk)
                break
            batch.append(chunk)
            size += len(chunk.items)
        return batch

    async def _consume(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._gather()
            live = [chunk for chunk in batch if not chunk.future.cancelled()]
            count = sum(len(chunk.items) for chunk in batch)
            self._queued_items -= count
            if not live:
                continue
            kind = live[0].kind
            items = [item for chunk in live for item in chunk.items]
            started = time.perf_counter()
            try:
                results = await loop.run_in_executor(self._executor, self._run_batch, kind, items)
            except asyncio.CancelledError:
                for chunk in live:
                    if not chunk.future.done():
                        chunk.future.set_exception(DependencyUnavailable("The embedder is shutting down."))
                raise
            except Exception as exc:  # the model failed: every request in the batch gets the error
                log.exception("a %s batch of %d items failed", kind, len(items))
                for chunk in live:
                    if not chunk.future.done():
                        chunk.future.set_exception(exc)
                continue
            elapsed = time.perf_counter() - started
            if self._on_batch is not None:
                self._on_batch(kind, len(items), elapsed)
            offset = 0
            for chunk in live:
                end = offset + len(chunk.items)
                if not chunk.future.done():
                    chunk.future.set_result(list(results[offset:end]))
                offset = end
