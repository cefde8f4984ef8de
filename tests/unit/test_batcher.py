"""`MicroBatcher` with a fake model: batch size and wait limits, order, back-pressure, failures,
cancelled callers. The run function records every batch it is handed, so tests can see exactly
which items the "model" saw and how they were grouped."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import threading
import time
from collections.abc import AsyncIterator, Callable

import grpc
import numpy as np
import pytest
from prometheus_client import REGISTRY

from vitrine.common.errors import ServiceError
from vitrine.embedder.batcher import MicroBatcher

_names = itertools.count()


class FakeModel:
    """Embeds number n as the row [n, 2n]; records batches; can block or fail on demand."""

    def __init__(self, fail_on: Callable[[list[float]], bool] = lambda batch: False) -> None:
        self.batches: list[list[float]] = []
        self.fail_on = fail_on
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()  # set when a batch has reached the model

    def __call__(self, batch: list[float]) -> np.ndarray:
        self.entered.set()
        self.gate.wait(10)
        self.batches.append(list(batch))
        if self.fail_on(batch):
            raise RuntimeError(f"model failed on {batch}")
        return np.array([[n, 2 * n] for n in batch], dtype=np.float32)

    @property
    def seen(self) -> list[float]:
        return [n for batch in self.batches for n in batch]


@pytest.fixture(scope="module")
def executor() -> concurrent.futures.ThreadPoolExecutor:
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="fake-model") as pool:
        yield pool


@contextlib.asynccontextmanager
async def batcher(
    executor: concurrent.futures.Executor,
    model: FakeModel,
    max_batch_size: int = 8,
    max_wait_s: float = 0.005,
    max_queue: int = 1000,
) -> AsyncIterator[MicroBatcher]:
    # Unique labels per batcher: the Prometheus metrics are process-global.
    b = MicroBatcher(f"fake-{next(_names)}", "text", model, executor, max_batch_size, max_wait_s, max_queue)
    b.start()
    try:
        yield b
    finally:
        model.gate.set()
        await b.stop()


def metric(name: str, b: MicroBatcher) -> float:
    value = REGISTRY.get_sample_value(name, {"model": b.labels[0], "modality": b.labels[1]})
    return 0.0 if value is None else value


async def wait_until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


async def test_single_call_returns_its_rows_in_order(executor) -> None:
    model = FakeModel()
    async with batcher(executor, model) as b:
        rows = await b.submit([3.0, 1.0, 2.0])
    assert rows.tolist() == [[3, 6], [1, 2], [2, 4]]
    assert model.batches == [[3.0, 1.0, 2.0]]


async def test_concurrent_callers_share_batches_and_each_gets_its_own_rows(executor) -> None:
    model = FakeModel()
    model.gate.clear()  # hold the first batch so that everything else queues up behind it
    calls = [[float(i * 10 + k) for k in range(1 + i % 3)] for i in range(40)]  # 1 to 3 items each
    async with batcher(executor, model, max_batch_size=16) as b:
        tasks = [asyncio.create_task(b.submit(items)) for items in calls]
        await wait_until(model.entered.is_set)
        model.gate.set()
        results = await asyncio.gather(*tasks)
        batches = metric("vitrine_embedder_batches_total", b)
        items = metric("vitrine_embedder_items_embedded_total", b)
    for items_in, rows in zip(calls, results, strict=True):
        assert rows[:, 0].tolist() == items_in  # every caller gets exactly its rows, in its order
        assert rows[:, 1].tolist() == [2 * n for n in items_in]
    n_items = sum(len(c) for c in calls)
    assert sorted(model.seen) == sorted(n for c in calls for n in c)
    assert len(model.batches) < len(calls), "concurrent calls must be merged"
    assert all(len(batch) <= 16 for batch in model.batches)
    assert batches == len(model.batches) and items == n_items
    # FIFO: the model sees the items in submission order
    assert model.seen == [n for c in calls for n in c]


async def test_max_batch_size_is_respected_and_a_full_batch_does_not_wait(executor) -> None:
    model = FakeModel()
    async with batcher(executor, model, max_batch_size=4, max_wait_s=5.0) as b:
        start = time.monotonic()
        rows = await b.submit([float(n) for n in range(8)])
        elapsed = time.monotonic() - start
    assert model.batches == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert rows[:, 0].tolist() == list(range(8))
    assert elapsed < 1.0, "full batches must go at once, not after max_wait"


async def test_a_lone_item_on_a_quiet_batcher_runs_at_once(executor) -> None:
    model = FakeModel()
    async with batcher(executor, model, max_batch_size=8, max_wait_s=5.0) as b:
        start = time.monotonic()
        await b.submit([1.0])
        await b.submit([2.0])
        elapsed = time.monotonic() - start
    assert model.batches == [[1.0], [2.0]]
    assert elapsed < 1.0, "with no concurrent calls, waiting for company only adds latency"


async def test_after_a_concurrent_batch_a_lone_item_waits_max_wait(executor) -> None:
    model = FakeModel()
    async with batcher(executor, model, max_batch_size=8, max_wait_s=0.2) as b:
        await b.submit([0.0, 0.5])  # a batch of two: calls are coming concurrently
        start = time.monotonic()
        await b.submit([1.0])
        elapsed = time.monotonic() - start
    assert model.batches == [[0.0, 0.5], [1.0]]
    assert 0.18 <= elapsed < 1.0


async def test_items_arriving_within_max_wait_join_the_batch(executor) -> None:
    model = FakeModel()
    async with batcher(executor, model, max_batch_size=8, max_wait_s=0.5) as b:
        await b.submit([0.0, 0.5])
        first = asyncio.create_task(b.submit([1.0]))
        await asyncio.sleep(0.05)
        second = asyncio.create_task(b.submit([2.0]))
        await asyncio.gather(first, second)
        await asyncio.sleep(0.6)  # later than max_wait after the first: a new batch
        await b.submit([3.0])
    assert model.batches == [[0.0, 0.5], [1.0, 2.0], [3.0]]


async def test_full_queue_gives_resource_exhausted_at_once(executor) -> None:
    model = FakeModel()
    model.gate.clear()
    async with batcher(executor, model, max_batch_size=1, max_queue=4) as b:
        # Exported before any call, so the queue alert's depth / capacity ratio always has a denominator.
        assert REGISTRY.get_sample_value("vitrine_embedder_queue_capacity", {"model": b.labels[0]}) == 4
        depth = {"model": b.labels[0], "modality": b.labels[1]}
        assert REGISTRY.get_sample_value("vitrine_embedder_queue_depth", depth) == 0
        running = asyncio.create_task(b.submit([0.0]))  # taken by the worker, blocks in the model
        await wait_until(model.entered.is_set)
        queued = asyncio.create_task(b.submit([1.0, 2.0, 3.0, 4.0]))  # exactly max_queue: accepted
        await asyncio.sleep(0)
        assert metric("vitrine_embedder_queue_depth", b) == 4
        for items in ([5.0], [float(n) for n in range(5)]):
            start = time.monotonic()
            with pytest.raises(ServiceError) as caught:
                await b.submit(items)
            assert time.monotonic() - start < 0.1
            assert caught.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "full" in caught.value.message and "4" in caught.value.message
        model.gate.set()
        assert (await running).tolist() == [[0, 0]]
        assert (await queued)[:, 0].tolist() == [1, 2, 3, 4]
        assert (await b.submit([5.0])).tolist() == [[5, 10]]  # room again once drained
    assert model.seen == [0, 1, 2, 3, 4, 5]


async def test_a_failing_batch_fails_its_callers_and_the_worker_keeps_serving(executor) -> None:
    model = FakeModel(fail_on=lambda batch: 13.0 in batch)
    async with batcher(executor, model, max_batch_size=4) as b:
        with pytest.raises(RuntimeError, match="model failed"):
            await b.submit([12.0, 13.0])
        assert (await b.submit([14.0])).tolist() == [[14, 28]]
        # a caller whose items span several batches fails as a whole when one of them fails
        with pytest.raises(RuntimeError):
            await b.submit([1.0, 2.0, 3.0, 4.0, 13.0, 6.0])
        results = await asyncio.gather(*(b.submit([float(n)]) for n in range(20, 30)))
        assert [r[0, 0] for r in results] == list(range(20, 30))
        assert metric("vitrine_embedder_batches_total", b) == len(model.batches) - 2  # failures not counted


async def test_cancelled_callers_items_are_skipped(executor) -> None:
    model = FakeModel()
    model.gate.clear()
    async with batcher(executor, model, max_batch_size=8) as b:
        blocker = asyncio.create_task(b.submit([0.0]))
        await wait_until(model.entered.is_set)
        gone = asyncio.create_task(b.submit([1.0, 2.0]))
        stays = asyncio.create_task(b.submit([3.0]))
        timed_out = asyncio.create_task(asyncio.wait_for(b.submit([4.0]), 0.05))
        await asyncio.sleep(0.01)
        gone.cancel()
        with pytest.raises(TimeoutError):
            await timed_out
        model.gate.set()
        await blocker
        assert (await stays).tolist() == [[3, 6]]
        with pytest.raises(asyncio.CancelledError):
            await gone
        assert (await b.submit([5.0])).tolist() == [[5, 10]]
    assert model.seen == [0, 3, 5], "items of callers that have gone must never reach the model"


async def test_a_caller_cancelled_while_its_batch_runs_does_not_break_the_worker(executor) -> None:
    model = FakeModel()
    model.gate.clear()
    async with batcher(executor, model) as b:
        doomed = asyncio.create_task(b.submit([1.0, 2.0]))
        await wait_until(model.entered.is_set)
        doomed.cancel()  # its items are already in the model
        with pytest.raises(asyncio.CancelledError):
            await doomed
        model.gate.set()
        assert (await b.submit([3.0])).tolist() == [[3, 6]]
    assert model.batches == [[1.0, 2.0], [3.0]]


async def test_stop_ends_the_worker(executor) -> None:
    model = FakeModel()
    b = MicroBatcher(f"fake-{next(_names)}", "text", model, executor, 4, 0.001, 10)
    b.start()
    await b.submit([1.0])
    await b.stop()
    assert b._worker is not None and b._worker.done()


class ShortAnswerModel(FakeModel):
    """Returns one row too few for its first batch (a broken model), then behaves."""

    def __call__(self, batch: list[float]) -> np.ndarray:
        rows = super().__call__(batch)
        return rows[:-1] if len(self.batches) == 1 else rows


async def test_a_model_answering_the_wrong_number_of_rows_fails_the_batch_not_the_worker(executor) -> None:
    async with batcher(executor, ShortAnswerModel()) as b:
        with pytest.raises(RuntimeError, match="1 rows for 2 items"):
            await asyncio.wait_for(b.submit([1.0, 2.0]), 5)
        assert (await asyncio.wait_for(b.submit([3.0]), 5)).tolist() == [[3, 6]]
