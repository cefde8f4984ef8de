"""How the tagger's model version changes while it runs: one load at a time (ReloadModel calls
for the same version share it), and a watcher that loads each newer complete version appearing
in model_dir and keeps saying so in the log while there is none.

The named health service `vitrine.v1.TaggerService` and the gauge `vitrine_tagger_model_loaded`
follow whether a version is loaded (the server sets them when it installs one), so Kubernetes
keeps a pod without a model out of the Service while the process itself counts as up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from pathlib import Path
from typing import Any, Generic, TypeVar

import grpc
from prometheus_client import Gauge

from vitrine.common.errors import ServiceError
from vitrine.tagger.model_store import newest_version, stamp
from vitrine.v1 import tagger_pb2

log = logging.getLogger("vitrine.tagger")

SERVICE_NAME = tagger_pb2.DESCRIPTOR.services_by_name["TaggerService"].full_name
MODEL_LOADED = Gauge("vitrine_tagger_model_loaded", "1 while a model version is loaded (SuggestTags answers), else 0.")
# While no version is loaded the log says so at start and then this often, not every poll.
NO_MODEL_REMINDER_S = 300.0
# Refusals that another try of the same files would repeat: not retried on every poll.
FINAL_CODES = (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND)

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


class Busy(Exception):
    def __init__(self, key: Any) -> None:
        super().__init__(f"{key!r} is in progress")
        self.key = key


class SingleFlight(Generic[K, T]):
    """At most one job at a time. A call for the job in progress waits for it and gets its
    result (or its error); a call for another job meanwhile is refused with `Busy`. The job runs
    to its end even when every caller gives up (a deadline), so its work is not wasted."""

    def __init__(self) -> None:
        self.running: tuple[K, asyncio.Future[T]] | None = None

    def in_progress(self) -> K | None:
        if self.running is None or self.running[1].done():
            return None
        return self.running[0]

    async def run(self, key: K, job: Callable[[], Awaitable[T]]) -> T:
        current = self.in_progress()
        if current is None:
            task = asyncio.ensure_future(job())
            task.add_done_callback(_retrieved)
            self.running = (key, task)
        elif current != key:
            raise Busy(current)
        assert self.running is not None
        return await asyncio.shield(self.running[1])


def _retrieved(task: asyncio.Future[object]) -> None:
    # Its callers got the error (or all left); asyncio need not warn that nobody read it.
    if not task.cancelled():
        task.exception()


class ModelWatcher:
    """Every `poll_s` seconds (when > 0), loads the newest complete version of `model_dir` once it
    differs from the newest one already dealt with, through `load` (ReloadModel's path, without
    force, so the dev-score gate applies); a refused version is logged once and left alone until
    a newer one appears. While `has_model()` is false, a warning every NO_MODEL_REMINDER_S."""

    def __init__(
        self,
        model_dir: Path,
        poll_s: float,
        load: Callable[[Path], Awaitable[object]],
        has_model: Callable[[], bool],
        no_model_message: Callable[[], str],
        seen: tuple[str, float] | None,
        serving: Callable[[], Path | None],
    ) -> None:
        self.model_dir = model_dir
        self.poll_s = poll_s
        self.load = load
        self.has_model = has_model
        self.no_model_message = no_model_message
        self.seen = seen  # (name, meta.json time) of the newest version dealt with
        self.serving = serving
        self.reported: set[tuple[str, float]] = set()
        self.warned_at = -float("inf")

    def remind(self) -> None:
        if self.has_model() or time.monotonic() - self.warned_at < NO_MODEL_REMINDER_S:
            return
        self.warned_at = time.monotonic()
        log.warning(
            "no trained model",
            extra={
                "model_dir": str(self.model_dir),
                "health": f"{SERVICE_NAME} NOT_SERVING",
                "polling_s": self.poll_s,
                "hint": self.no_model_message(),
            },
        )

    async def run(self) -> None:
        while True:
            self.remind()
            if self.poll_s <= 0 and self.has_model():
                return  # nothing left to watch for
            await asyncio.sleep(self.poll_s if self.poll_s > 0 else NO_MODEL_REMINDER_S)
            if self.poll_s > 0:
                try:
                    await self.check()
                except Exception:  # the watcher must outlive any one bad check
                    log.exception("checking model_dir failed", extra={"model_dir": str(self.model_dir)})

    async def check(self) -> None:
        newest = await asyncio.to_thread(newest_version, self.model_dir)
        if newest is None:
            return
        try:
            key = stamp(newest)
        except OSError:
            return  # removed while we looked
        if key == self.seen:
            return
        if newest == self.serving():
            self.seen = key  # already loaded (by ReloadModel)
            return
        try:
            await self.load(newest)
        except Exception as exc:  # every failure is reported; only final ones are not retried
            final = isinstance(exc, ServiceError) and exc.code in FINAL_CODES
            if key not in self.reported:
                self.reported.add(key)
                reason = exc.message if isinstance(exc, ServiceError) else f"{type(exc).__name__}: {exc}"
                log.warning(
                    "new version not loaded",
                    extra={"version": newest.name, "reason": reason, "retried_every_poll": not final},
                )
            if final:
                self.seen = key
            return
        self.seen = key
