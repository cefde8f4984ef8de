"""The search service's snapshot RPCs: CreateSnapshot, ListSnapshots, DownloadSnapshot, DeleteSnapshot.

Embedded store: archives (snapshot.py) in the snapshot folder, written on the store's thread so
that each holds every write acknowledged before it, and streamed to `vitrine-search snapshot`.
Qdrant server: the server's own snapshot API (qdrant-client); the archives stay on the server,
which serves and recovers them itself (see README, Backups).
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
from prometheus_client import Counter, Gauge

from vitrine.common.errors import (
    ServiceError,
    already_exists,
    failed_precondition,
    invalid_argument,
    not_found,
    resource_exhausted,
)
from vitrine.search import snapshot
from vitrine.search.store import AsyncStore
from vitrine.v1 import search_pb2

log = logging.getLogger("vitrine.search.snapshots")

SNAPSHOTS = Counter("vitrine_search_snapshots", "CreateSnapshot calls, by result (created, failed).", ["result"])
SNAPSHOT_SECONDS = Gauge(
    "vitrine_search_snapshot_seconds",
    "Duration of the last snapshot; for the embedded store, the time writes and searches waited for it.",
)
for _result in ("created", "failed"):
    SNAPSHOTS.labels(_result)

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
NAME_RULE = "1 to 100 letters, digits, '.', '_' or '-', starting with a letter or digit"
# A Qdrant server names snapshots itself (collection-shard-time.snapshot); looser than ours.
SERVER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,254}")
# A bad name is the caller's mistake, not a failed backup (what the failed count alerts on).
REQUEST_ERRORS = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.ALREADY_EXISTS)
# Room left free beyond the archive's estimated size, so a snapshot never fills the disk.
FREE_MARGIN_BYTES = 64 * 1024 * 1024


def check_name(name: str, pattern: re.Pattern[str] = NAME) -> str:
    if not pattern.fullmatch(name):
        raise invalid_argument(f"name {name[:60]!a} is not a snapshot name: {NAME_RULE} (no path separators)")
    return name


def _default_name(collection: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]", "-", collection).lstrip("._-")[:60] or "snapshot"
    return f"{stem}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"


def _utc(created: str | None) -> str:
    """Qdrant gives a naive UTC time (2026-12-02T14:00:00); RFC 3339 wants the zone."""
    if not created:
        return ""
    return created if created.endswith("Z") or "+" in created[10:] else f"{created}Z"


class SnapshotService:
    def __init__(self, store: AsyncStore, folder: str | Path, qdrant_url: str = "") -> None:
        self.store = store
        self.folder = Path(folder)
        self.qdrant_url = qdrant_url.rstrip("/")
        self._writing: set[str] = set()  # names being written (reserved before the first await)

    def _archive(self, name: str) -> Path:
        return self.folder / f"{name}{snapshot.ARCHIVE_SUFFIX}"

    # -- create ------------------------------------------------------------------------------

    async def create(self, name: str) -> search_pb2.Snapshot:
        started = time.monotonic()
        try:
            if self.store.keeps_own_snapshots:
                made, details = await self._create_on_server(name), {}
            else:
                made, details = await self._create_archive(name)
        except ServiceError as exc:
            if exc.code not in REQUEST_ERRORS:
                SNAPSHOTS.labels("failed").inc()
            raise
        except BaseException:
            SNAPSHOTS.labels("failed").inc()
            raise
        seconds = time.monotonic() - started
        SNAPSHOTS.labels("created").inc()
        SNAPSHOT_SECONDS.set(seconds)
        log.info(
            "snapshot created",
            extra={
                "snapshot": made.name,
                "store": made.store,
                "objects": made.objects if made.HasField("objects") else "unknown",
                "bytes": made.size_bytes,
                "seconds": round(seconds, 2),
                **details,
            },
        )
        return made

    def _reserve(self, requested: str) -> str:
        if requested:
            name = check_name(requested)
            if name in self._writing or self._archive(name).exists():
                raise already_exists(f"a snapshot named {name!r} exists: pick another name or delete it first")
            return name
        base = name = _default_name(self.store.collection)
        n = 1
        while name in self._writing or self._archive(name).exists():
            n += 1
            name = f"{base}-{n}"
        return name

    def _prepare_folder(self, store_folder: Path) -> None:
        """Make the folder, drop what interrupted snapshots left, check the archive will fit."""
        self.folder.mkdir(parents=True, exist_ok=True)
        busy = {snapshot.partial_path(self._archive(name)) for name in self._writing}
        for partial in self.folder.glob(".*.partial"):
            if partial not in busy:
                partial.unlink(missing_ok=True)
        needed = snapshot.folder_bytes(store_folder) + FREE_MARGIN_BYTES
        free = shutil.disk_usage(self.folder).free
        if free < needed:
            raise resource_exhausted(
                f"the snapshot folder {self.folder} has {free / 2**20:.0f} MiB free, a snapshot needs about "
                f"{needed / 2**20:.0f} MiB: free space, delete old snapshots (DeleteSnapshot) or set "
                "VITRINE_SEARCH_SNAPSHOT_DIR to a larger disk",
                "SNAPSHOT_NO_SPACE",
                retry_s=None,  # space does not free itself: no RetryInfo
            )

    async def _create_archive(self, requested: str) -> tuple[search_pb2.Snapshot, dict[str, float]]:
        name = self._reserve(requested)
        self._writing.add(name)
        try:
            await asyncio.to_thread(self._prepare_folder, self.store.folder)
            # On the store's thread: nothing else touches the store until the archive is written.
            started = time.monotonic()
            info = await self.store.holding_embedded(snapshot.write_partial, self._archive(name))
            paused = time.monotonic() - started
            info = await asyncio.to_thread(snapshot.publish, self._archive(name), info)
        except snapshot.NoSpace as exc:
            raise resource_exhausted(
                f"{exc}: free space, delete old snapshots (DeleteSnapshot) or set VITRINE_SEARCH_SNAPSHOT_DIR",
                "SNAPSHOT_NO_SPACE",
                retry_s=None,
            ) from exc
        finally:
            self._writing.discard(name)
        # How long writes and searches waited: the figure to watch as the collection grows.
        return _embedded_message(info), {"store_paused_s": round(paused, 3)}

    async def _create_on_server(self, requested: str) -> search_pb2.Snapshot:
        if requested:
            raise invalid_argument("a Qdrant server names its snapshots itself: leave name empty")
        try:
            description = await self.store.create_server_snapshot()
        except NotImplementedError as exc:  # qdrant-client's local mode
            raise failed_precondition(f"this Qdrant has no snapshots: {exc}") from exc
        if description is None:
            raise failed_precondition("the Qdrant server made no snapshot (it answered without a description)")
        return self._server_message(description)

    def _server_message(self, description: Any) -> search_pb2.Snapshot:
        return search_pb2.Snapshot(
            name=description.name,
            store="server",
            collection=self.store.collection,
            size_bytes=int(description.size),
            sha256=description.checksum or "",
            created_at=_utc(description.creation_time),
        )

    # -- list, download, delete --------------------------------------------------------------

    async def list(self) -> list[search_pb2.Snapshot]:
        if self.store.keeps_own_snapshots:
            found = [self._server_message(d) for d in await self.store.list_server_snapshots()]
        else:
            found = await asyncio.to_thread(self._list_archives)
        return sorted(found, key=lambda s: (s.created_at, s.name), reverse=True)

    def _list_archives(self) -> list[search_pb2.Snapshot]:
        found = []
        for archive in sorted(self.folder.glob(f"*{snapshot.ARCHIVE_SUFFIX}")):
            name = archive.name.removesuffix(snapshot.ARCHIVE_SUFFIX)
            if not NAME.fullmatch(name) or name in self._writing:
                continue
            try:
                found.append(_embedded_message(snapshot.describe(archive)))
            except (snapshot.SnapshotError, OSError) as exc:
                log.warning("unreadable snapshot left out", extra={"file": str(archive), "error": str(exc)})
        return found

    def _existing(self, name: str) -> Path:
        check_name(name)
        archive = self._archive(name)
        if name in self._writing:
            raise failed_precondition(f"snapshot {name!r} is still being written: retry when CreateSnapshot answered")
        if not archive.is_file():
            raise not_found(f"no snapshot named {name!r} in {self.folder} (ListSnapshots lists them)")
        return archive

    async def download(self, name: str) -> AsyncIterator[search_pb2.DownloadSnapshotResponse]:
        if self.store.keeps_own_snapshots:
            check_name(name, SERVER_NAME)
            raise failed_precondition(
                f"snapshots of a Qdrant server stay on it: download it from "
                f"GET {self.qdrant_url or '<qdrant url>'}/collections/{self.store.collection}/snapshots/{name} "
                "(with the api-key header)"
            )
        archive = self._existing(name)
        try:
            handle = await asyncio.to_thread(open, archive, "rb")
        except FileNotFoundError as exc:  # deleted meanwhile
            raise not_found(f"snapshot {name!r} was deleted") from exc
        try:
            info = await asyncio.to_thread(snapshot.describe, archive)
            first = True
            while chunk := await asyncio.to_thread(handle.read, snapshot.CHUNK):
                message = search_pb2.DownloadSnapshotResponse(data=chunk)
                if first:
                    message.snapshot.CopyFrom(_embedded_message(info))
                    first = False
                yield message
        except snapshot.SnapshotError as exc:
            raise failed_precondition(f"snapshot {name!r} is unreadable: {exc}") from exc
        finally:
            handle.close()

    async def delete(self, name: str) -> None:
        if self.store.keeps_own_snapshots:
            check_name(name, SERVER_NAME)
            try:
                await self.store.delete_server_snapshot(name)
            except ServiceError:
                raise
            except Exception as exc:
                if getattr(exc, "status_code", None) == 404:
                    raise not_found(f"the Qdrant server has no snapshot {name!r} of this collection") from exc
                raise
        else:
            archive = self._existing(name)
            await asyncio.to_thread(_remove, archive)
        log.info("snapshot deleted", extra={"snapshot": name})


def _remove(archive: Path) -> None:
    snapshot.checksum_path(archive).unlink(missing_ok=True)
    archive.unlink(missing_ok=True)


def _embedded_message(info: snapshot.SnapshotInfo) -> search_pb2.Snapshot:
    return search_pb2.Snapshot(
        name=info.name,
        store="embedded",
        collection=info.collection,
        size_bytes=info.size_bytes,
        sha256=info.sha256,
        objects=info.objects,
        created_at=info.created_at,
    )
