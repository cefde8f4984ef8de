"""`vitrine-search`: load records into a running search service, look at the collection.

    vitrine-search ingest objects.jsonl.gz [--images DIR] [--limit N]
    vitrine-search load-demo            # the demo collection (Tate records + paintings with images)
    vitrine-search info
    vitrine-search search "sailing ship in a storm"
    vitrine-search eval --data tate_dev.jsonl.gz --out eval/   # search and recommend quality

Every command is a client of the search service's RPCs (UpsertObjects, GetCollectionInfo,
Search): the service does the embedding and storing. `eval` starts a search service of its own
on a fresh store (see evaluate.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc

from vitrine.search import evaluate
from vitrine.search.ingest import IngestError, IngestSummary, collection_info, ingest, open_channel
from vitrine.search.records import DEFAULT_MAX_IMAGE_BYTES, RecordError, count_rows, load_records, read_rows
from vitrine.search.settings import DEFAULT_ADDRESS
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


async def cmd_ingest(args: argparse.Namespace) -> int:
    path = Path(args.path)
    if not path.is_file():
        raise SystemExit(f"vitrine-search: no such file: {path}")
    if args.images and not Path(args.images).is_dir():
        raise SystemExit(f"vitrine-search: --images {args.images} is not a folder")
    summary = await _ingest_file(args, path, Path(args.images) if args.images else None, args.limit, wait_s=args.wait)
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
    p.add_argument("path", help="Records file.")
    p.add_argument(
        "--images",
        help="Folder of the records' image files (the `file` field); default: next to the records file.",
    )
    p.add_argument("--limit", type=int, help="Only the first N records.")
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

    p = commands.add_parser("search", help="Search the collection (quick check from the terminal).")
    p.add_argument("query")
    p.add_argument("--page-size", type=int, default=10)

    p = commands.add_parser(
        "eval",
        help="Measure search and recommend quality through a search service of its own (issue #13).",
        description=evaluate.__doc__.split("\n\n")[2] if evaluate.__doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    evaluate.add_arguments(p, DEFAULT_DATA_DIR / "paintings")
    return parser


COMMANDS = {"ingest": cmd_ingest, "load-demo": cmd_load_demo, "info": cmd_info, "search": cmd_search}
# Commands that start and stop processes of their own, and run their event loop themselves.
SYNC_COMMANDS = {"eval": evaluate.run_eval}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command in SYNC_COMMANDS:
            return SYNC_COMMANDS[args.command](args)
        return asyncio.run(COMMANDS[args.command](args))
    except (IngestError, RecordError, evaluate.EvalError) as exc:
        print(f"vitrine-search: {exc}", file=sys.stderr)
        return 1
    except grpc.aio.AioRpcError as exc:
        print(f"vitrine-search: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
