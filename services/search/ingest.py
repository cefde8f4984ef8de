"""Bulk ingest: records -> batches of objects -> UpsertObjects on the search service.

The CLI and any batch job go through the same RPC as museum systems do, so there is one write
path. Unchanged objects cost one store lookup on the server (their content hash matches), so
re-running an ingest is fast.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tqdm import tqdm

from vitrine.common import channels, rich_errors
from vitrine.common.records import Loaded
from vitrine.common.security import bearer
from vitrine.v1 import common_pb2, search_pb2, search_pb2_grpc

log = logging.getLogger("vitrine.search.ingest")

# Keep a batch's images well under the gRPC message limit (32 MiB by default on both sides).
MAX_BATCH_BYTES = 16 * 1024 * 1024
_RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.DEADLINE_EXCEEDED}
# The object a field violation is about: "objects[17].image" -> 17.
_OBJECT_FIELD = re.compile(r"^objects\[(\d+)\]")


class IngestError(RuntimeError):
    """The ingest cannot go on (service unreachable, or an error that is not about one batch)."""


def _kind(reason: str) -> str:
    """A reason without its particulars ("image file not found: a.jpg" -> "image file not found"),
    to count reasons by kind."""
    return reason.split(":", 1)[0].strip()


@dataclass
class IngestSummary:
    read: int = 0
    upserted: int = 0
    unchanged: int = 0
    with_image: int = 0
    seconds: float = 0.0
    # Reason kind -> count, and a few examples (where or id, reason) of each.
    skipped: Counter[str] = field(default_factory=Counter)
    without_image: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def _note(self, counter: Counter[str], where: str, reason: str) -> None:
        kind = _kind(reason)
        counter[kind] += 1
        examples = self.examples.setdefault(kind, [])
        if len(examples) < 3:
            examples.append(f"{where}: {reason}")

    def skip(self, where: str, reason: str) -> None:
        self._note(self.skipped, where, reason)

    def no_image(self, where: str, reason: str) -> None:
        self._note(self.without_image, where, reason)

    def lines(self) -> list[str]:
        rate = self.read / self.seconds if self.seconds else 0.0
        out = [
            f"{self.read} records in {self.seconds:.1f} s ({rate:.1f}/s): {self.upserted} upserted, "
            f"{self.unchanged} unchanged, {sum(self.skipped.values())} skipped; {self.with_image} sent with an image"
        ]
        for title, counter in (("skipped", self.skipped), ("stored without image", self.without_image)):
            for kind, n in counter.most_common():
                out.append(f"  {title}: {n} × {kind}")
                out.extend(f"      e.g. {example}" for example in self.examples.get(kind, []))
        return out


def batches(loaded: Iterable[Loaded], summary: IngestSummary, batch_size: int) -> Iterator[list[Loaded]]:
    """Objects in batches of at most `batch_size` objects and MAX_BATCH_BYTES. Skipped records
    and repeated ids are noted in the summary (the first record with an id wins)."""
    seen: set[str] = set()
    batch: list[Loaded] = []
    size = 0
    for item in loaded:
        summary.read += 1
        if item.object is None:
            summary.skip(item.where, item.skipped)
            continue
        if item.object.id in seen:
            summary.skip(item.where, f"duplicate id: {item.object.id} already came in an earlier record")
            continue
        seen.add(item.object.id)
        if item.image_problem:
            summary.no_image(item.where, item.image_problem)
        object_size = item.object.ByteSize()
        if batch and (len(batch) >= batch_size or size + object_size > MAX_BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(item)
        size += object_size
    if batch:
        yield batch


def open_channel(address: str, max_message_mb: int = 64, tls_ca_file: str = "") -> grpc.aio.Channel:
    """A channel to the search service: plaintext, or TLS verified against `tls_ca_file`."""
    return channels.open_channel(address, tls_ca_file, max_message_mb)


async def wait_serving(channel: grpc.aio.Channel, address: str, timeout_s: float) -> None:
    """Wait until the search service reports SERVING (it waits for the embedder at start-up)."""
    health = health_pb2_grpc.HealthStub(channel)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            answer = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
            if answer.status == health_pb2.HealthCheckResponse.SERVING:
                return
        except grpc.aio.AioRpcError:
            pass
        if time.monotonic() > deadline:
            raise IngestError(f"the search service at {address} is not SERVING after {timeout_s:.0f} s")
        await asyncio.sleep(0.5)


async def _upsert(
    stub: search_pb2_grpc.SearchServiceStub,
    objects: list[common_pb2.CollectionObject],
    timeout_s: float,
    token: str,
) -> search_pb2.UpsertObjectsResponse:
    delay = 1.0
    for attempt in range(4):
        try:
            return await stub.UpsertObjects(
                search_pb2.UpsertObjectsRequest(objects=objects), timeout=timeout_s, metadata=bearer(token)
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() not in _RETRYABLE or attempt == 3:
                raise
            # The service's RetryInfo says how long a full queue or a restart takes; else back off.
            asked = rich_errors.retry_delay(exc)
            wait = asked if asked is not None else delay
            log.warning(
                "upsert failed, retrying",
                extra={"code": exc.code().name, "attempt": attempt + 1, "wait_s": wait},
            )
            await asyncio.sleep(wait)
            delay *= 2
    raise AssertionError("unreachable")


def _refused(violations: list[tuple[str, str]]) -> dict[int, str]:
    """Index in the request -> what the service said is wrong with that object."""
    found: dict[int, str] = {}
    for path, description in violations:
        matched = _OBJECT_FIELD.match(path)
        if matched:
            found.setdefault(int(matched.group(1)), description)
    return found


def _reason(error: search_pb2.ObjectError) -> str:
    """An ObjectError in the summary's words: its violation's description (it names the field)."""
    return next(iter(_refused(rich_errors.violations_of(error.status)).values()), error.status.message)


async def ingest(
    loaded: Iterable[Loaded],
    address: str,
    batch_size: int = 64,
    total: int | None = None,
    concurrency: int = 2,
    progress: bool = True,
    timeout_s: float = 600.0,
    wait_s: float = 0.0,
    description: str = "ingest",
    token: str = "",
    tls_ca_file: str = "",
) -> IngestSummary:
    """Send every object to UpsertObjects, `concurrency` batches in flight (so the embedder always
    has the next batch while one is being stored), with the service's write `token` when it has
    one. Returns what happened to every record."""
    summary = IngestSummary()
    start = time.perf_counter()
    bar = tqdm(total=total, unit="obj", desc=description, disable=not progress, file=sys.stderr, smoothing=0.1)
    async with open_channel(address, tls_ca_file=tls_ca_file) as channel:
        if wait_s:
            await wait_serving(channel, address, wait_s)
        stub = search_pb2_grpc.SearchServiceStub(channel)
        in_flight: set[asyncio.Task[Any]] = set()
        read_before = 0

        async def send(batch: list[Loaded], records: int) -> None:
            objects = [item.object for item in batch if item.object is not None]
            try:
                answer = await _upsert(stub, objects, timeout_s, token)
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.INVALID_ARGUMENT:
                    raise IngestError(f"UpsertObjects at {address} failed: {exc.code().name}: {exc.details()}") from exc
                # Every object refused: the status details say why, object by object.
                refused = _refused(rich_errors.violations_of(exc))
                for n, item in enumerate(batch):
                    where = f"{item.where} ({item.object.id})" if item.object is not None else item.where
                    summary.skip(where, refused.get(n, f"refused by the service: {exc.details()}"))
            else:
                summary.upserted += answer.upserted
                summary.unchanged += answer.unchanged
                refused = {e.index: _reason(e) for e in answer.errors}
                skipped = {s.id: s.reason for s in answer.skipped}
                for n, item in enumerate(batch):
                    assert item.object is not None
                    if n in refused:
                        summary.skip(f"{item.where} ({item.object.id})", refused[n])
                    elif item.object.id in skipped:
                        summary.skip(f"{item.where} ({item.object.id})", skipped[item.object.id])
                    elif item.object.image.WhichOneof("source"):
                        summary.with_image += 1
            bar.update(records)
            bar.set_postfix(
                upserted=summary.upserted, unchanged=summary.unchanged, skipped=sum(summary.skipped.values())
            )

        try:
            for batch in batches(loaded, summary, batch_size):
                # Records skipped while reading count towards progress with the batch after them.
                records, read_before = summary.read - read_before, summary.read
                if len(in_flight) >= concurrency:
                    done, in_flight = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                    for task in done:
                        task.result()
                in_flight.add(asyncio.create_task(send(batch, records)))
            for task in asyncio.as_completed(in_flight):
                await task
            bar.update(summary.read - read_before)
        finally:
            for task in in_flight:
                task.cancel()
            bar.close()
    summary.seconds = time.perf_counter() - start
    return summary


async def collection_info(
    address: str, timeout_s: float = 10.0, tls_ca_file: str = ""
) -> search_pb2.GetCollectionInfoResponse:
    async with open_channel(address, tls_ca_file=tls_ca_file) as channel:
        stub = search_pb2_grpc.SearchServiceStub(channel)
        return await stub.GetCollectionInfo(search_pb2.GetCollectionInfoRequest(), timeout=timeout_s)
