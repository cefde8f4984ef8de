"""`vitrine-search`: load records into a running search service, look at the collection.

    vitrine-search ingest objects.jsonl.gz [--images DIR] [--limit N]
    vitrine-search ingest https://museum.org/iiif/collection.json [--language en]   # IIIF 3 / 2.1
    vitrine-search ingest export.csv --columns mapping.yaml [--dry-run N]          # CSV exports
    vitrine-search load-demo            # the demo collection (Tate records + paintings with images)
    vitrine-search info
    vitrine-search harvest https://museum.org/oai --metadata-prefix lido   # OAI-PMH, incremental
    vitrine-search export objects.jsonl   # every object (ListObjects) as JSON lines ingest reads
    vitrine-search search "sailing ship in a storm"
    vitrine-search eval --data tate_dev.jsonl.gz --out eval/   # search and recommend quality
    vitrine-search snapshot --out backup.tar                   # consistent copy of the store
    vitrine-search restore backup.tar --data-dir var/search   # with the service stopped

Every command is a client of the search service's RPCs (UpsertObjects, GetCollectionInfo,
Search): the service does the embedding and storing. `eval` starts a search service of its own
on a fresh store (vitrine.evaluation); `restore` works on a data folder, with no service running.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import json
import os
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict

from vitrine.common.fetch import FetchSettings
from vitrine.common.records import (
    DEFAULT_MAX_IMAGE_BYTES,
    Loaded,
    RecordError,
    count_rows,
    load_records,
    read_rows,
    record_to_object,
)
from vitrine.common.security import bearer
from vitrine.search import export, harvest, snapshot, snapshot_restore
from vitrine.search.formats import columns, iiif
from vitrine.search.ingest import IngestError, IngestSummary, collection_info, ingest, open_channel
from vitrine.search.settings import DEFAULT_ADDRESS
from vitrine.search.store import StoreError
from vitrine.v1 import common_pb2, search_pb2, search_pb2_grpc

# services/search/cli.py -> the repository root, whose sibling holds the shared data.
DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data"
DEMO_TATE = 1000
DEMO_PAINTINGS = 600
# More than half the Tate records are Turner's sketchbook pages: the demo keeps any one artist
# to this share of its Tate records so that it shows the breadth of the collection.
DEMO_MAX_ARTIST_SHARE = 0.2


def spread_rows(
    path: Path, n: int | None, max_artist_share: float | None = None
) -> list[tuple[int, dict[str, Any] | str]]:
    """`n` records spread evenly over the file (all when n is None), no artist above
    `max_artist_share` of them when there are enough others; in file order. Deterministic."""
    rows = [(number, row) for number, row in read_rows(path) if isinstance(row, dict)]
    if n is None or n >= len(rows):
        return list(rows)
    step = max(1, len(rows) // n)
    # Visit every step-th row first, then the ones between them: spread, and a full pass.
    order = [i for start in range(step) for i in range(start, len(rows), step)]
    cap = max(1, int(n * max_artist_share)) if max_artist_share else n
    per_artist: Counter[str] = Counter()
    chosen: list[int] = []
    for i in order:
        artist = str(rows[i][1].get("artist") or "")  # type: ignore[union-attr]
        if artist and per_artist[artist] >= cap:
            continue
        per_artist[artist] += 1
        chosen.append(i)
        if len(chosen) == n:
            break
    return [rows[i] for i in sorted(chosen)]


def _print_summary(summary: IngestSummary) -> None:
    for line in summary.lines():
        print(line)


async def _ingest_file(
    args: argparse.Namespace,
    path: Path,
    images: Path | None,
    limit: int | None,
    rows: list[tuple[int, dict[str, Any] | str]] | None = None,
    wait_s: float = 0.0,
) -> IngestSummary:
    total = len(rows) if rows is not None else count_rows(path)
    if limit is not None:
        total = min(total, limit)
    loaded = load_records(path, images, limit, args.max_image_mb * 1024 * 1024, rows=rows)
    return await ingest(
        loaded,
        args.address,
        batch_size=args.batch_size,
        total=total,
        concurrency=args.concurrency,
        progress=not args.quiet,
        wait_s=wait_s,
        description=path.name,
        token=args.token,
        tls_ca_file=args.tls_ca_file,
    )


def preview_records(path: Path, rows: Iterable[tuple[int, dict[str, Any] | str]]) -> Iterator[Loaded]:
    """Records as objects without reading their images (for a dry run)."""
    for number, row in rows:
        where = f"{path.name}:{number}"
        try:
            yield Loaded(where, record_to_object(row)) if isinstance(row, dict) else Loaded(where, skipped=row)
        except RecordError as exc:
            yield Loaded(where, skipped=str(exc))


def _dry_run(items: Iterable[Loaded], n: int) -> int:
    """Print the first `n` records as they would be stored (JSON lines of the CollectionObject
    fields; skipped ones on stderr), storing nothing."""
    for item in itertools.islice(items, n):
        if item.object is None:
            print(f"{item.where}: skipped: {item.skipped}", file=sys.stderr)
        else:
            print(json.dumps(MessageToDict(item.object, preserving_proto_field_name=True), ensure_ascii=False))
    return 0


async def _ingest_iiif(args: argparse.Namespace) -> int:
    settings = iiif.IiifSettings(
        language=args.language,
        max_manifests=args.limit or iiif.IiifSettings.max_manifests,
        fetch=FetchSettings(max_bytes=int(args.max_image_mb * 2**20)),
        images=args.dry_run is None,
    )
    loaded = iiif.read_iiif(args.path, settings)
    if args.dry_run is not None:
        return _dry_run(loaded, args.dry_run)
    summary = await ingest(
        loaded,
        args.address,
        batch_size=args.batch_size,
        concurrency=args.concurrency,
        progress=not args.quiet,
        wait_s=args.wait,
        description="iiif",
        token=args.token,
        tls_ca_file=args.tls_ca_file,
    )
    _print_summary(summary)
    return 0


async def cmd_ingest(args: argparse.Namespace) -> int:
    if args.iiif or (not args.columns and iiif.looks_like_iiif(args.path)):
        return await _ingest_iiif(args)
    path = Path(args.path)
    if not path.is_file():
        raise SystemExit(f"vitrine-search: no such file: {path}")
    if args.images and not Path(args.images).is_dir():
        raise SystemExit(f"vitrine-search: --images {args.images} is not a folder")
    rows = list(columns.mapped_rows(path, columns.load_mapping(args.columns))) if args.columns else None
    if args.dry_run is not None:
        preview = rows if rows is not None else read_rows(path)
        return _dry_run(preview_records(path, preview), args.dry_run)
    summary = await _ingest_file(
        args, path, Path(args.images) if args.images else None, args.limit, rows=rows, wait_s=args.wait
    )
    _print_summary(summary)
    return 0


async def cmd_load_demo(args: argparse.Namespace) -> int:
    data = Path(args.data)
    tate_files = [data / "tate" / "tate_dev.jsonl.gz"] + ([data / "tate" / "tate_train.jsonl.gz"] if args.all else [])
    paintings = data / "paintings" / "metadata.jsonl"
    missing = [str(p) for p in [*tate_files, paintings] if not p.is_file()]
    if missing:
        raise SystemExit(f"vitrine-search: demo data missing: {', '.join(missing)} (--data names the data folder)")
    tate_n = None if args.all else args.tate
    paintings_n = None if args.all else args.paintings
    wait_s = args.wait
    summaries = []
    for path in tate_files:
        if tate_n == 0:
            break
        rows = spread_rows(path, tate_n, None if args.all else DEMO_MAX_ARTIST_SHARE)
        summaries.append(await _ingest_file(args, path, None, None, rows=rows, wait_s=wait_s))
        wait_s = 0.0
    if paintings_n != 0:
        rows = spread_rows(paintings, paintings_n)
        summaries.append(await _ingest_file(args, paintings, None, None, rows=rows, wait_s=wait_s))
    for summary in summaries:
        _print_summary(summary)
    info = await collection_info(args.address, tls_ca_file=args.tls_ca_file)
    print(f"collection: {info.objects} objects, {info.objects_with_image} with an image")
    return 0


async def cmd_info(args: argparse.Namespace) -> int:
    info = await collection_info(args.address, tls_ca_file=args.tls_ca_file)
    print(
        json.dumps(
            {
                "objects": info.objects,
                "objects_with_image": info.objects_with_image,
                "store": info.store,
                "vector_dimensions": dict(info.vector_dimensions),
                "text_model": info.text_model,
                "image_model": info.image_model,
            },
            indent=2,
        )
    )
    return 0


async def cmd_search(args: argparse.Namespace) -> int:
    async with open_channel(args.address, tls_ca_file=args.tls_ca_file) as channel:
        stub = search_pb2_grpc.SearchServiceStub(channel)
        answer = await stub.Search(
            search_pb2.SearchRequest(query=args.query, page=common_pb2.PageRequest(page_size=args.page_size)),
            timeout=30,
        )
    for n, hit in enumerate(answer.hits, start=1):
        o = hit.object
        print(f"{n:3d}. {hit.score:.3f}  {o.id}  {o.title} — {o.artist or 'unknown'} ({o.date or '?'})")
    for notice in answer.notices:
        print(f"note: {notice}")
    return 0


def _describe(s: search_pb2.Snapshot) -> str:
    objects = f"{s.objects} objects, " if s.HasField("objects") else ""
    where = f"{s.store} store, collection {s.collection}"
    return f"snapshot {s.name} ({where}): {objects}{s.size_bytes} bytes, sha256 {s.sha256 or '?'}"


async def _download(stub: search_pb2_grpc.SearchServiceStub, name: str, out: Path, token: str) -> search_pb2.Snapshot:
    """Save a snapshot's archive to `out` (through `out.partial`), checking its size and SHA-256
    against the service's description, and write `out.sha256` beside it."""
    partial = out.with_name(out.name + ".partial")
    digest, size = hashlib.sha256(), 0
    described: search_pb2.Snapshot | None = None
    try:
        with open(partial, "wb") as handle:
            async for message in stub.DownloadSnapshot(
                search_pb2.DownloadSnapshotRequest(name=name), timeout=3600, metadata=bearer(token)
            ):
                if described is None:
                    described = message.snapshot
                digest.update(message.data)
                size += len(message.data)
                handle.write(message.data)
            handle.flush()
            os.fsync(handle.fileno())
        if described is None or size != described.size_bytes or digest.hexdigest() != described.sha256:
            raise snapshot.SnapshotError(
                f"the download of snapshot {name!r} is incomplete or damaged ({size} bytes, sha256 "
                f"{digest.hexdigest()}; the service described {described.size_bytes if described else '?'} bytes, "
                f"sha256 {described.sha256 if described else '?'}): try again"
            )
        os.replace(partial, out)
        snapshot.write_checksum(out, described.sha256)
    finally:
        partial.unlink(missing_ok=True)
    return described


async def cmd_snapshot(args: argparse.Namespace) -> int:
    out = Path(args.out) if args.out else None
    if out is not None and out.exists() and not args.force:
        raise SystemExit(f"vitrine-search: {out} exists (--force replaces it)")
    async with open_channel(args.address, tls_ca_file=args.tls_ca_file) as channel:
        stub = search_pb2_grpc.SearchServiceStub(channel)
        if args.existing:
            listed = await stub.ListSnapshots(search_pb2.ListSnapshotsRequest(), timeout=60)
            made = next((s for s in listed.snapshots if s.name == args.existing), None)
            if made is None:
                raise SystemExit(f"vitrine-search: the service has no snapshot {args.existing!r}")
        else:
            answer = await stub.CreateSnapshot(
                search_pb2.CreateSnapshotRequest(name=args.name), timeout=args.timeout, metadata=bearer(args.token)
            )
            made = answer.snapshot
        print(_describe(made))
        if out is None:
            return 0
        if made.store != "embedded":
            print(
                "vitrine-search: the snapshot stays on the Qdrant server (GET /collections/<collection>/snapshots/"
                f"{made.name} downloads it; see README, Backups): nothing saved to {out}",
                file=sys.stderr,
            )
            return 1
        await _download(stub, made.name, out, args.token)
    print(f"saved {out} and {snapshot.checksum_path(out).name}")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    restored = snapshot_restore.restore(
        Path(args.archive), Path(args.data_dir), args.collection, force=args.force, expected_sha256=args.sha256
    )
    checked = f"SHA-256 checked against {restored.checked_against}" if restored.checked_against else "no SHA-256 given"
    print(f"restored {restored.objects} objects into {restored.path} (every file's checksum matched; {checked})")
    return 0


EVAL_DESCRIPTION = """\
What it does (issue #13):
1. Starts a search service of its own on a fresh temporary store (`vitrine.launcher`), pointed at
   the embedder at `--embedder` or at one it starts itself (`--start-embedder`).
2. Ingests the objects through the ordinary ingest path (UpsertObjects) *without* their
   curators' subjects (`subjects` and `subject_paths` are dropped from every record before it is
   read; the subjects are kept on this side only, as ground truth), then checks through GetObject
   that no stored object carries a subject.
3. Runs the queries through the Search RPC: `fused` (the server's default fusion), each signal
   alone (`signal_weights`, the others at 0) and, on this side, a TF-IDF keyword baseline over the
   same metadata text (`tfidf`, the prototype's method). Without `--queries` the queries are built
   from the subjects (terms and co-occurring pairs; typo variants swap two letters of one word)
   and written to DIR/queries.jsonl.
4. Recommend quality through the Recommend RPC: text side (like 3 objects sharing a subject, share
   of the next 12 that carry it) on the same store; image side (paintings: like 3 by one artist,
   or of one century and medium) on a second fresh store of all the paintings. Each against
   random picks and against the mean-vector strategy.
5. Writes DIR/metrics.json, DIR/metrics.md (also printed), DIR/per_query.jsonl and the service
   logs in DIR/logs; stops everything it started, also on Ctrl-C or an error.
"""


def add_eval_arguments(p: argparse.ArgumentParser, default_paintings: Path) -> None:
    """The flags of `eval` (defined here, read by vitrine.evaluation.search)."""
    p.add_argument("--data", required=True, help="Objects with curators' subjects (JSONL/JSONL.gz/JSON/CSV).")
    p.add_argument("--queries", help="Queries file (JSONL: query, relevant, optional typo_of); default: generated.")
    p.add_argument("--out", required=True, help="Output folder (metrics.json, metrics.md, queries, logs).")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--embedder", default="127.0.0.1:50051", help="Embedder address (default %(default)s).")
    where.add_argument("--start-embedder", action="store_true", help="Start an embedder of its own.")
    p.add_argument(
        "--embedder-models",
        help="Models of the embedder it starts (default: the text model, plus efficientnet-lite0 for paintings).",
    )
    p.add_argument("--text-model", default="mpnet", help="Text model of the search service (default %(default)s).")
    p.add_argument(
        "--tagger-model",
        help="A trained tagger version (folder): machine tags indexed with the objects (signal 'tags'). "
        "It must not have trained on any evaluated object (checked against its training_ids.txt).",
    )
    p.add_argument(
        "--image-model",
        default="",
        help="Image model of the paintings store (default: the service's choice, clip else efficientnet-lite0).",
    )
    p.add_argument("--limit", type=int, help="Only N objects, spread evenly over the file.")
    p.add_argument("--max-queries", type=int, default=300, help="Generated clean queries (default %(default)s).")
    p.add_argument("--min-relevant", type=int, default=3, help="Generated queries' least relevant objects (default 3).")
    p.add_argument("--seed", type=int, default=0, help="Seed of query generation and trials (default 0).")
    p.add_argument(
        "--max-groups", type=int, default=200, help="Subjects sampled for text-side Recommend (default %(default)s)."
    )
    paintings = p.add_mutually_exclusive_group()
    paintings.add_argument(
        "--paintings",
        help=f"Paintings folder (or its metadata file) for image-side Recommend (default {default_paintings}, "
        "skipped when absent).",
    )
    p.set_defaults(default_paintings=str(default_paintings))
    paintings.add_argument("--no-paintings", action="store_true", help="Skip image-side Recommend.")
    p.add_argument("--paintings-limit", type=int, help="Only N paintings, spread evenly.")
    p.add_argument("--batch-size", type=int, default=64, help="Objects per UpsertObjects call (default 64).")
    p.add_argument("--concurrency", type=int, default=4, help="RPCs in flight (default %(default)s).")
    p.add_argument("--ready-timeout", type=float, default=600.0, help="Seconds to wait for a service to start.")
    p.add_argument("--quiet", action="store_true", help="No progress output.")


def cmd_eval(args: argparse.Namespace) -> int:
    # Imported here, not above: the search image leaves the evaluation package out, and every
    # other command (restore above all) still runs there.
    from vitrine.evaluation.errors import EvalError
    from vitrine.evaluation.search import run_eval

    try:
        return run_eval(args)
    except EvalError as exc:
        print(f"vitrine-search: {exc}", file=sys.stderr)
        return 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vitrine-search", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--address",
        default=os.environ.get("VITRINE_SEARCH_ADDRESS", DEFAULT_ADDRESS),
        help="Search service address (env VITRINE_SEARCH_ADDRESS, default %(default)s).",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("VITRINE_AUTH_TOKEN", ""),
        help="The service's write token, when it has one (env VITRINE_AUTH_TOKEN).",
    )
    parser.add_argument(
        "--tls-ca-file",
        default=os.environ.get("VITRINE_TLS_CA_FILE", ""),
        help="CA bundle (PEM) of a service serving TLS (env VITRINE_TLS_CA_FILE); default plaintext.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    def loading_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--batch-size", type=int, default=64, help="Objects per UpsertObjects call (default 64).")
        p.add_argument("--concurrency", type=int, default=2, help="Calls in flight (default 2).")
        p.add_argument(
            "--max-image-mb",
            type=float,
            default=DEFAULT_MAX_IMAGE_BYTES / 2**20,
            help="Larger image files are left out (default %(default)g MiB).",
        )
        p.add_argument(
            "--wait", type=float, default=300.0, help="Seconds to wait for the service to be SERVING (default 300)."
        )
        p.add_argument("--quiet", action="store_true", help="No progress bar.")

    p = commands.add_parser("ingest", help="Load records (JSONL, JSONL.gz, JSON, CSV) into the collection.")
    p.add_argument("path", help="Records file, or a IIIF manifest or collection (URL or .json file).")
    p.add_argument(
        "--images",
        help="Folder of the records' image files (the `file` field); default: next to the records file.",
    )
    p.add_argument("--limit", type=int, help="Only the first N records (IIIF: manifests).")
    p.add_argument(
        "--iiif", action="store_true", help="PATH is a IIIF manifest or collection (found by itself for URLs and JSON)."
    )
    p.add_argument("--language", default="en", help="IIIF: the language to read labels and values in (default en).")
    p.add_argument("--columns", metavar="MAPPING.yaml", help="PATH is a CSV export mapped by this file (README).")
    p.add_argument(
        "--dry-run", type=int, metavar="N", help="Print the first N records as they would be stored; store nothing."
    )
    loading_options(p)

    p = commands.add_parser("load-demo", help="Load the demo collection: Tate records and paintings with images.")
    p.add_argument("--tate", type=int, default=DEMO_TATE, help="Tate records (dev split), default %(default)s.")
    p.add_argument("--paintings", type=int, default=DEMO_PAINTINGS, help="Paintings with images, default %(default)s.")
    p.add_argument("--all", action="store_true", help="Everything: both Tate splits (62k) and all 4,375 paintings.")
    p.add_argument(
        "--data",
        default=os.environ.get("VITRINE_DATA_DIR", str(DEFAULT_DATA_DIR)),
        help="Data folder (env VITRINE_DATA_DIR, default %(default)s).",
    )
    loading_options(p)

    commands.add_parser("info", help="Collection size, models and store.")

    p = commands.add_parser("export", help="Write every object (with curators' and machine tags) as JSON lines.")
    export.add_arguments(p)

    p = commands.add_parser("harvest", help="Harvest an OAI-PMH endpoint (Dublin Core or LIDO), changes only.")
    harvest.add_arguments(p)
    loading_options(p)

    p = commands.add_parser("search", help="Search the collection (quick check from the terminal).")
    p.add_argument("query")
    p.add_argument("--page-size", type=int, default=10)

    p = commands.add_parser(
        "eval",
        help="Measure search and recommend quality through a search service of its own (issue #13).",
        description=EVAL_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_eval_arguments(p, DEFAULT_DATA_DIR / "paintings")

    p = commands.add_parser(
        "snapshot",
        help="Ask the running service for a consistent snapshot of its collection; --out saves it here.",
    )
    p.add_argument("--out", help="Save the archive to this file, with FILE.sha256 beside it (embedded store).")
    p.add_argument("--name", default="", help="The snapshot's name (default <collection>-<UTC time>).")
    p.add_argument("--existing", default="", help="Save this existing snapshot instead of taking a new one.")
    p.add_argument("--force", action="store_true", help="Replace --out when it exists.")
    p.add_argument("--timeout", type=float, default=600.0, help="Seconds CreateSnapshot may take (default 600).")

    p = commands.add_parser(
        "restore",
        help="Restore a snapshot archive into a data folder (stop the search service first).",
    )
    p.add_argument("archive", help="Snapshot archive (from `vitrine-search snapshot --out`).")
    p.add_argument("--data-dir", required=True, help="The search service's data folder (VITRINE_SEARCH_DATA_DIR).")
    p.add_argument("--collection", default="", help="Collection name to restore as (default: the snapshot's).")
    p.add_argument("--sha256", default="", help="The archive's expected SHA-256 (default: read from ARCHIVE.sha256).")
    p.add_argument("--force", action="store_true", help="Replace an existing collection of that name.")
    return parser


COMMANDS = {
    "ingest": cmd_ingest,
    "load-demo": cmd_load_demo,
    "info": cmd_info,
    "export": export.run,
    "harvest": harvest.cmd_harvest,
    "search": cmd_search,
    "snapshot": cmd_snapshot,
}
# Commands that run without the service or start processes of their own, outside an event loop.
SYNC_COMMANDS = {"eval": cmd_eval, "restore": cmd_restore}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command in SYNC_COMMANDS:
            return SYNC_COMMANDS[args.command](args)
        return asyncio.run(COMMANDS[args.command](args))
    except (IngestError, RecordError, snapshot.SnapshotError, StoreError) as exc:
        print(f"vitrine-search: {exc}", file=sys.stderr)
        return 1
    except grpc.aio.AioRpcError as exc:
        print(f"vitrine-search: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
