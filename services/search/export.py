"""`vitrine-search export OUT.jsonl`: the collection as JSON lines, paged through ListObjects.

Each line is one object in the field names `vitrine-search ingest` reads (records.py), so an
export can be ingested again: id, title, artist, date, year, medium, classification,
description, movements, subjects (the curators' tags), extra, and `image` (the image's URI, or
the file or URL its bytes were read from). The machine tags the tagger gave at ingest come as
`machine_tags` ([{"label", "score"}], best first) with `machine_tags_version`; ingest leaves
those two out (the tagger gives them again).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from tqdm import tqdm

from vitrine.common.records import EXTRA_IMAGE_SOURCE, LIST_FIELDS, TEXT_FIELDS
from vitrine.search.ingest import open_channel
from vitrine.v1 import common_pb2, search_pb2, search_pb2_grpc

PAGE_SIZE = 100  # the service's largest page (SearchSettings.max_page_size by default)


def to_record(item: search_pb2.ListedObject) -> dict[str, Any]:
    """A listed object as an ingestable record (empty fields left out)."""
    obj: common_pb2.CollectionObject = item.object
    record: dict[str, Any] = {"id": obj.id}
    for name in TEXT_FIELDS:
        if getattr(obj, name):
            record[name] = getattr(obj, name)
    if obj.HasField("year"):
        record["year"] = obj.year
    for name in LIST_FIELDS:
        if getattr(obj, name):
            record[name] = list(getattr(obj, name))
    # Where ingest read the image from is bookkeeping of that ingest: `image` says it now.
    extra = {k: v for k, v in sorted(obj.extra.items()) if k != EXTRA_IMAGE_SOURCE}
    if extra:
        record["extra"] = extra
    image = obj.image.uri or obj.image.origin
    if image:
        record["image"] = image
    if item.machine_tags:
        record["machine_tags"] = [{"label": t.label, "score": round(t.score, 4)} for t in item.machine_tags]
    if item.machine_tags_version:
        record["machine_tags_version"] = item.machine_tags_version
    return record


async def listed_objects(
    stub: search_pb2_grpc.SearchServiceStub, request: search_pb2.ListObjectsRequest, timeout_s: float
) -> AsyncIterator[tuple[search_pb2.ListedObject, int]]:
    """Every object the request lists, page after page, with the total the service counts."""
    request.page.page_token = ""
    while True:
        answer = await stub.ListObjects(request, timeout=timeout_s)
        for item in answer.objects:
            yield item, answer.page.total_size
        if not answer.page.next_page_token:
            return
        request.page.page_token = answer.page.next_page_token


async def export(
    out: Path,
    address: str,
    request: search_pb2.ListObjectsRequest | None = None,
    progress: bool = True,
    timeout_s: float = 60.0,
    tls_ca_file: str = "",
) -> int:
    """Write every listed object to `out` (replaced only once complete); returns how many."""
    request = request or search_pb2.ListObjectsRequest()
    if not request.page.page_size:
        request.page.page_size = PAGE_SIZE
    out.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    bar = tqdm(unit="obj", desc="export", disable=not progress, file=sys.stderr)
    partial = out.with_name(f".{out.name}.partial")
    try:
        with partial.open("w", encoding="utf-8") as handle:
            async with open_channel(address, tls_ca_file=tls_ca_file) as channel:
                stub = search_pb2_grpc.SearchServiceStub(channel)
                async for item, total in listed_objects(stub, request, timeout_s):
                    handle.write(json.dumps(to_record(item), ensure_ascii=False) + "\n")
                    written += 1
                    bar.total = total
                    bar.update(1)
        # A half-written export never takes the place of a complete one.
        os.replace(partial, out)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    finally:
        bar.close()
    return written


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", help="JSON lines file to write (replaced when the export is complete).")
    p.add_argument("--artist", action="append", default=[], help="Only this artist's objects (repeatable).")
    p.add_argument("--tag", action="append", default=[], help="Only objects with this curators' tag (repeatable).")
    p.add_argument("--quiet", action="store_true", help="No progress bar.")


async def run(args: argparse.Namespace) -> int:
    request = search_pb2.ListObjectsRequest(filter=search_pb2.Filter(artists=args.artist, tags=args.tag))
    n = await export(Path(args.out), args.address, request, not args.quiet, tls_ca_file=args.tls_ca_file)
    print(f"{n} objects written to {args.out}")
    return 0
