"""Dynamic micro-batching: many small concurrent calls share one model forward pass.

Every model/modality pair has one `MicroBatcher`. Callers `submit` items and await their
vectors; a single worker task takes the first waiting item, then gathers more until the batch
is full (`max_batch_size`) or the first item has waited `max_wait_s`, and runs the model once in
the model thread. Waiting only pays when calls come concurrently, so after a batch of one item
a lone item runs at once: a quiet service answers without the wait, a busy one fills batches.
The queue is bounded: when it is full, callers get RESOURCE_EXHAUSTED at once instead of memory
growing without limit. Items whose caller has gone (cancelled, deadline) are
dropped before they reach the model.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from prometheus_client import Counter, Gauge, Histogram

from vitrine.common.errors import resource_exhausted

log = logging.getLogger("vitrine.embedder.batcher")

BATCH_SIZE = Histogram(
    "vitrine_embedder_batch_size",
    "Items per model forward pass.",
    ["model", "modality"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
BATCHES = Counter("vitrine_embedder_batches", "Model forward passes run.", ["model", "modality"])
ITEMS = Counter("vitrine_embedder_items_embedded", "Texts or images embedded.", ["model", "modality"])
QUEUE_DEPTH = Gauge("vitrine_embedder_queue_depth", "Items waiting for a micro-batch.", ["model", "modality"])
# The alert on a filling queue divides depth by this, so it follows the configured max_queue.
QUEUE_CAPACITY = Gauge(
    "vitrine_embedder_queue_capacity", "Items a model's queue (each of its modalities) may hold.", ["model"]
)
BATCH_SECONDS = Histogram(
    "vitrine_embedder_batch_duration_seconds",
    "Time of one model forward pass.",
    ["model", "modality"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


class MicroBatcher:
    def __init__(
        self,
        model: str,
        modality: str,
        run_batch: Callable[[list[Any]], np.ndarray],
        executor: concurrent.futures.Executor,
        max_batch_size: int,
        max_wait_s: float,
        max_queue: int,
    ) -> None:
        self.labels = (model, modality)
        self.run_batch = run_batch
        self.executor = executor
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self._queue: asyncio.Queue[tuple[Any, asyncio.Future[np.ndarray]]] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._concurrent = False  # the last batch had more than one item
        QUEUE_CAPACITY.labels(model).set(max_queue)
        QUEUE_DEPTH.labels(model, modality).set(0)

    def start(self) -> None:
        self._worker = asyncio.create_task(self._run(), name=f"batcher-{'-'.join(self.labels)}")

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker

    async def submit(self, items: Sequence[Any]) -> np.ndarray:
        """Embed `items` (all or nothing); returns one row per item, in order."""
        if self._queue.qsize() + len(items) > self.max_queue:
            raise resource_exhausted(
                f"embedder queue for {self.labels[0]} is full ({self.max_queue} items waiting); retry with back-off",
                "QUEUE_FULL",
                metadata={"model": self.labels[0], "max_queue": str(self.max_queue)},
            )
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in items]
        for item, future in zip(items, futures, strict=True):
            self._queue.put_nowait((item, future))
        QUEUE_DEPTH.labels(*self.labels).set(self._queue.qsize())
        try:
            rows = await asyncio.gather(*futures)
        except BaseException:
            for future in futures:
                future.cancel()
            raise
        return np.stack(rows)

    async def _next_batch(self) -> list[tuple[Any, asyncio.Future[np.ndarray]]]:
        batch = [await self._queue.get()]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self.max_wait_s if self._concurrent else 0.0)
        while len(batch) < self.max_batch_size:
            if not self._queue.empty():
                batch.append(self._queue.get_nowait())
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except TimeoutError:
                break
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch()
            QUEUE_DEPTH.labels(*self.labels).set(self._queue.qsize())
            live = [(item, future) for item, future in batch if not future.done()]
            self._concurrent = len(batch) > 1
            if not live:
                continue
            timer = BATCH_SECONDS.labels(*self.labels).time()
            try:
                with timer:
                    vectors = await loop.run_in_executor(self.executor, self.run_batch, [item for item, _ in live])
                if len(vectors) != len(live):  # would otherwise kill the worker and hang every later call
                    raise RuntimeError(f"model returned {len(vectors)} rows for {len(live)} items")
            except Exception as exc:  # a model failure fails this batch's callers, not the worker
                log.exception("model batch failed", extra={"model": self.labels[0], "items": len(live)})
                for _, future in live:
                    if not future.done():
                        future.set_exception(exc)
                continue
            BATCHES.labels(*self.labels).inc()
            BATCH_SIZE.labels(*self.labels).observe(len(live))
            ITEMS.labels(*self.labels).inc(len(live))
            for (_, future), vector in zip(live, vectors, strict=True):
                if not future.done():
                    future.set_result(vector)
