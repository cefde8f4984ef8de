"""Restoring a snapshot archive (snapshot.py) into a search service's data folder.

It needs the service stopped: it writes the collection's folder, which only one process may open
(and holds the engine's lock on it while it does). It unpacks into a hidden staging folder next to
the collection, checks every file's checksum, the archive's SHA-256 when one is known, and the
object count (by opening the restored store), and only then moves the folder in place.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

from vitrine.search.snapshot import (
    CHECKSUMS,
    CHUNK,
    COLLECTION_DIR,
    INDEX_RECORD,
    MANIFEST,
    ContentHash,
    SnapshotError,
    bytes_entry,
    check_manifest,
    checksum_path,
    read_checksum,
    read_manifest,
)
from vitrine.search.store import EmbeddedStore, sync_folder


class _HashingReader:
    """A read-only file that hashes and counts what is read from it."""

    def __init__(self, source: IO[bytes]) -> None:
        self.source = source
        self.hash = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self.source.read(n)
        self.hash.update(data)
        self.size += len(data)
        return data

    def drain(self) -> None:
        while self.read(CHUNK):
            pass


def _member_target(root: Path, name: str) -> Path:
    """Where an archive member goes under `root`; refuses names that would leave it."""
    parts = PurePosixPath(name).parts
    if name.startswith("/") or not parts or parts[0] != COLLECTION_DIR or any(p in (".", "..") for p in parts):
        raise SnapshotError(f"archive member {name!r} is outside {COLLECTION_DIR}/: refusing a tampered archive")
    return root.joinpath(*parts[1:])


def _extract(source: IO[bytes], staging: Path) -> tuple[str, bytes | None]:
    """Unpack an archive stream into `staging` (the collection folder's future contents), checking
    each file against the archive's checksums. Returns the archive's SHA-256 and the index record."""
    reader = _HashingReader(source)
    computed: dict[str, dict[str, Any]] = {}
    manifest: dict[str, Any] | None = None
    listed: dict[str, Any] | None = None
    index_record: bytes | None = None
    try:
        with tarfile.open(fileobj=reader, mode="r|") as tar:
            for member in tar:
                if manifest is None:
                    if member.name != MANIFEST or not member.isfile():
                        raise SnapshotError(
                            f"the archive does not start with {MANIFEST}: not a Vitrine search snapshot"
                        )
                    manifest = check_manifest(json.loads(_read_member(tar, member)), "the archive")
                    continue
                if listed is not None:
                    raise SnapshotError(f"archive member {member.name!r} comes after {CHECKSUMS}")
                if member.name == CHECKSUMS and member.isfile():
                    listed = json.loads(_read_member(tar, member))
                    if not isinstance(listed, dict):
                        raise SnapshotError(f"{CHECKSUMS} is not a table of files")
                elif member.name == INDEX_RECORD and member.isfile():
                    index_record = _read_member(tar, member)
                    computed[INDEX_RECORD] = bytes_entry(index_record)
                elif member.isdir():
                    _member_target(staging, member.name).mkdir(parents=True, exist_ok=True)
                elif member.isfile():
                    target = _member_target(staging, member.name)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    computed[member.name] = _write_sparse(tar, member, target)
                else:
                    raise SnapshotError(f"archive member {member.name!r} is not a plain file or folder")
        reader.drain()  # the tar's end blocks count in the archive's checksum
    except (tarfile.TarError, EOFError, ValueError, UnicodeDecodeError) as exc:
        raise SnapshotError(f"the archive is damaged or truncated ({type(exc).__name__}: {exc})") from exc
    if manifest is None:
        raise SnapshotError("the archive is empty")
    if listed is None:
        raise SnapshotError(f"the archive has no {CHECKSUMS} at its end: it is truncated")
    bad = sorted(name for name in set(listed) | set(computed) if listed.get(name) != computed.get(name))
    if bad:
        raise SnapshotError(f"{len(bad)} file(s) of the archive do not match their checksum, first {bad[0]!r}")
    return reader.hash.hexdigest(), index_record


def _write_sparse(tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path) -> dict[str, Any]:
    """Write a member's data regions to `target`, leaving its holes (and blocks of zeros) as holes,
    so the restored store takes the disk space the original did. Returns its checksum entry."""
    digest = ContentHash(member.size)
    handle = tar.extractfile(member)
    assert handle is not None  # a regular file
    regions = [(o, n) for o, n in (member.sparse or [(0, member.size)]) if n]
    at = 0
    with open(target, "wb") as out:
        for offset, length in regions:
            while at < offset:  # a hole: tarfile gives zeros (a stream cannot seek)
                skipped = len(handle.read(min(CHUNK, offset - at)))
                if not skipped:
                    raise SnapshotError(f"archive member {member.name!r} is truncated")
                at += skipped
            out.seek(offset)
            left = length
            while left:
                chunk = handle.read(min(CHUNK, left))
                if not chunk:
                    raise SnapshotError(f"archive member {member.name!r} is truncated")
                digest.feed(at, chunk)
                at += len(chunk)
                left -= len(chunk)
                if chunk.count(0) == len(chunk):
                    out.seek(len(chunk), os.SEEK_CUR)
                else:
                    out.write(chunk)
        out.truncate(member.size)
    return {"size": member.size, "sha256": digest.hexdigest()}


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    if member.size > 16 * 1024 * 1024:
        raise SnapshotError(f"archive member {member.name!r} is {member.size} bytes: too large for its kind")
    handle = tar.extractfile(member)
    assert handle is not None
    return handle.read()


@dataclass(frozen=True)
class Restored:
    path: Path
    collection: str
    objects: int
    sha256: str
    checked_against: str  # where the archive's expected SHA-256 came from ("" when none was given)


def _occupied(data_dir: Path, collection: str) -> list[Path]:
    """What restoring `collection` into `data_dir` would replace."""
    found = [data_dir / collection] if (data_dir / collection).exists() else []
    if found and found[0].is_dir() and not any(found[0].iterdir()):
        found = []
    return found + sorted(data_dir.glob(f"{collection}.*"))


@contextlib.contextmanager
def _held(collection_folder: Path) -> Iterator[None]:
    """Hold the lock the engine takes on its WAL folder (qdrant-edge flocks it; a second opener
    gets WouldBlock), so that no search service has the collection open, nor opens it while it is
    replaced."""
    wal = collection_folder / "wal"
    if not wal.is_dir():
        yield
        return
    descriptor = os.open(wal, os.O_RDONLY)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise SnapshotError(
                f"the vector store in {collection_folder} is in use by a running search service: stop it first"
            ) from exc
        yield
    finally:
        os.close(descriptor)


def restore(
    archive: Path,
    data_dir: Path,
    collection: str = "",
    force: bool = False,
    expected_sha256: str = "",
) -> Restored:
    """Restore a snapshot archive as `data_dir/<collection>` (default: the snapshot's collection
    name). Refuses to replace an existing collection unless `force`, and one a running service
    holds in any case. Checks the archive's SHA-256 (`expected_sha256`, else the `.sha256` file
    beside it, when there is one), every file's checksum and the object count; until all match,
    the existing collection is left as it was."""
    if not archive.is_file():
        raise SnapshotError(f"no such snapshot archive: {archive}")
    manifest = read_manifest(archive)
    collection = collection or manifest["collection"]
    if not collection or "/" in collection or collection.startswith(".") or "\x00" in collection:
        raise SnapshotError(f"collection name {collection!r} is not a folder name: pick another with --collection")
    expected, source = expected_sha256.strip().lower(), "--sha256"
    if not expected:
        expected, source = read_checksum(archive) or "", str(checksum_path(archive))
    data_dir.mkdir(parents=True, exist_ok=True)
    occupied = _occupied(data_dir, collection)
    if occupied and not force:
        raise SnapshotError(
            f"{occupied[0]} already exists: restore into an empty data folder, another --collection, "
            "or pass --force to replace it (with the search service stopped)"
        )
    with _held(data_dir / collection):
        return _restore_into(archive, data_dir, collection, manifest, occupied, expected, source)


def _restore_into(
    archive: Path,
    data_dir: Path,
    collection: str,
    manifest: dict[str, Any],
    occupied: list[Path],
    expected: str,
    source: str,
) -> Restored:
    staging_name = f".{collection}.restoring"
    staging = data_dir / staging_name
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        with open(archive, "rb") as source_file:
            sha256, index_record = _extract(source_file, staging)
        if expected and sha256 != expected:
            raise SnapshotError(f"the archive's SHA-256 is {sha256}, not {expected} (from {source}): it is damaged")
        store = EmbeddedStore(data_dir, staging_name)
        try:
            dims = store.stored_dimensions()
            if dims is None:
                raise SnapshotError("the archive holds no vector store")
            store.ensure_collection(dims)
            objects = store.count()
        finally:
            store.close()
        if objects != manifest["objects"]:
            raise SnapshotError(f"the restored store holds {objects} objects, the snapshot says {manifest['objects']}")
        for path in occupied:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
        os.replace(staging, data_dir / collection)
        if index_record is not None:
            (data_dir / f"{collection}.index.json").write_bytes(index_record)
        sync_folder(data_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Restored(data_dir / collection, collection, objects, sha256, source if expected else "")
