"""services/embedder/batcher.py with a fake model: gathering, bounds, ordering and errors."""
from __future__ import annotations

import asyncio
import threading

import pytest

from services.embedder.batcher import MicroBatcher, Saturated


class FakeModel:
    """Records each batch; answers item -> (kind, item). Optionally slow, or failing."""

    def __init__(self, delay: float = 0.0, fail: bool = False):
        self.batches: list[tuple[str, list]] = []
        self.delay = delay
        self.fail = fail
        self.threads: set[str] = set()

    def __call__(self, kind: str, items: list) -> list:
        import time

        self.threads.add(threading.current_thread().name)
        self.batches.append((kind, list(items)))
        if self.delay:
            time.sleep(self.delay)
        if self.fail:
            raise RuntimeError("the model broke")
        return [(kind, item) for item in items]


async def _with_batcher(model, body, **limits):
    options = {"max_batch": 8, "max_wait_ms": 50, "max_queue": 100} | limits
    observed = []
    batcher = MicroBatcher(model, on_batch=lambda kind, size, seconds: observed.append(size), **options)
    await batcher.start()
    try:
        return await body(batcher), observed
    finally:
        await batcher.stop()


def test_concurrent_requests_share_one_forward_pass():
    model = FakeModel()

    async def body(batcher):
        return await asyncio.gather(*(batcher.submit("text", [f"t{i}"]) for i in range(5)))

    results, observed = asyncio.run(_with_batcher(model, body))
    assert results == [[("text", f"t{i}")] for i in range(5)]
    assert observed == [5]
    assert len(model.threads) == 1 and next(iter(model.threads)).startswith("model")


def test_without_waiting_requests_that_arrive_while_the_model_works_share_the_next_pass():
    """max_wait_ms=0 (the default): a lone request runs at once, and what queues up during a forward
    pass goes into the next one together."""
    model = FakeModel(delay=0.2)

    async def body(batcher):
        first = asyncio.create_task(batcher.submit("text", ["alone"]))
        await asyncio.sleep(0.05)  # "alone" is in the model now
        rest = await asyncio.gather(*(batcher.submit("text", [f"t{i}"]) for i in range(5)))
        return [await first, *rest]

    results, observed = asyncio.run(_with_batcher(model, body, max_wait_ms=0))
    assert results == [[("text", "alone")], *[[("text", f"t{i}")] for i in range(5)]]
    assert observed == [1, 5]


def test_batches_are_bounded_and_kinds_never_mix():
    model = FakeModel()

    async def body(batcher):
        return await asyncio.gather(
            batcher.submit("text", [f"t{i}" for i in range(20)]),
            batcher.submit("image", ["i0", "i1"]),
            batcher.submit("text", ["late"]),
        )

    (texts, images, late), observed = asyncio.run(_with_batcher(model, body, max_batch=8))
    assert texts == [("text", f"t{i}") for i in range(20)]
    assert images == [("image", "i0"), ("image", "i1")] and late == [("text", "late")]
    assert max(observed) <= 8 and sum(observed) == 23
    assert all(len({item[0] for item in items}) == 1 for _, items in model.batches)
    assert all(kind == "text" and all(i.startswith("t") or i == "late" for i in items)
               or kind == "image" for kind, items in model.batches)


def test_full_queue_refuses_with_retry_after():
    model = FakeModel(delay=0.2)

    async def body(batcher):
        first = asyncio.create_task(batcher.submit("text", ["a"] * 4))
        await asyncio.sleep(0.05)  # the first batch is in the model; these wait in the queue
        second = asyncio.create_task(batcher.submit("text", ["b"] * 4))
        await asyncio.sleep(0)
        with pytest.raises(Saturated) as refused:
            await batcher.submit("text", ["c"] * 4)
        await asyncio.gather(first, second)
        return refused.value

    refused, _ = asyncio.run(_with_batcher(model, body, max_batch=4, max_queue=5, max_wait_ms=0))
    assert refused.status_code == 503 and refused.retry_after >= 1
    assert "saturated" in refused.message


def test_a_failing_batch_fails_its_requests_and_the_batcher_keeps_serving():
    model = FakeModel(fail=True)

    async def body(batcher):
        with pytest.raises(RuntimeError, match="the model broke"):
            await batcher.submit("text", ["a"])
        model.fail = False
        return await batcher.submit("text", ["b"])

    result, _ = asyncio.run(_with_batcher(model, body))
    assert result == [("text", "b")]


def test_call_runs_on_the_same_thread_as_the_batches():
    model = FakeModel()

    async def body(batcher):
        loader = await batcher.call(lambda: threading.current_thread().name)
        await batcher.submit("image", ["i0"])
        return loader

    loader, _ = asyncio.run(_with_batcher(model, body))
    assert model.threads == {loader}


def test_a_given_executor_serves_batchers_in_turn_and_outlives_them():
    from concurrent.futures import ThreadPoolExecutor

    shared = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shared-torch")
    model = FakeModel()

    async def twice():
        for round_ in range(2):
            batcher = MicroBatcher(model, max_batch=4, max_wait_ms=1, max_queue=10, executor=shared)
            await batcher.start()
            assert await batcher.submit("text", [f"t{round_}"]) == [("text", f"t{round_}")]
            await batcher.stop()

    asyncio.run(twice())
    assert len(model.threads) == 1 and next(iter(model.threads)).startswith("shared-torch")
    assert shared.submit(lambda: "still running").result() == "still running"
    shared.shutdown()
