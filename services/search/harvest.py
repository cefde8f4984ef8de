"""OAI-PMH harvesting: a museum's endpoint -> UpsertObjects and DeleteObjects on the search service.

    vitrine-search harvest https://museum.org/oai --metadata-prefix lido [--set S] [--from DATE] [--full]

The protocol side is oaipmh-scythe (the maintained successor of sickle): ListRecords with
resumption tokens, and retries of 503 answers after their Retry-After (bounded here, see
`_BoundedScythe`) and of connection failures with exponential back-off. Records are mapped by
`formats.dublin_core` (oai_dc) or `formats.lido` (lido) and sent through `ingest.ingest`, the same
write path as every other ingest: unchanged objects cost one hash lookup and write nothing.

Incremental by default: a small JSON state file keeps, per (endpoint, set, metadata prefix), the
responseDate of the last complete harvest (the server's clock, so no skew between machines) and
which object id each OAI identifier gave. The next harvest asks `from=` that date, in the
granularity the endpoint's Identify declares; `from` is inclusive, so records stamped in that same
second come again and are found unchanged. `<header status="deleted">` deletes the object its OAI
identifier gave (DeleteObjects), after the upserts. The state is written only when a harvest has
completed, so an interrupted one is simply repeated from the same date.
"""

from __future__ import annotations

import argparse
import contextlib
import email.utils
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
from lxml import etree
from oaipmh_scythe import Scythe
from oaipmh_scythe.config import HTTPConfig, RetryConfig
from oaipmh_scythe.exceptions import NoRecordsMatch, OAIPMHException
from oaipmh_scythe.iterator import OAIResponseIterator

from vitrine.common.records import EXTRA_IMAGE_SOURCE, ImageReader, Loaded, RecordError
from vitrine.common.security import bearer
from vitrine.search.formats.dublin_core import dc_to_object
from vitrine.search.formats.lido import lido_to_object
from vitrine.search.ingest import IngestError, IngestSummary, ingest, open_channel
from vitrine.v1 import common_pb2, search_pb2, search_pb2_grpc

OAI = "{http://www.openarchives.org/OAI/2.0/}"
READERS: dict[str, Callable[[str, etree._Element], common_pb2.CollectionObject]] = {
    "oai_dc": dc_to_object,
    "lido": lido_to_object,
}
DEFAULT_STATE = os.path.join("var", "harvest", "state.json")
# DeleteObjects takes at most 1000 ids a call (MAX_DELETE_IDS in server.py).
DELETE_BATCH = 500
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}:\d{2}Z)?$")


class HarvestError(IngestError):
    """The harvest cannot go on (endpoint unreachable, refusing the request, bad arguments)."""


class _BoundedScythe(Scythe):
    """Scythe waits whatever a 503's Retry-After says (and cannot read its HTTP-date form): this
    caps the wait, so a misconfigured endpoint cannot park a harvest for a day."""

    def __init__(self, endpoint: str, max_wait_s: float, **kwargs: Any) -> None:
        super().__init__(endpoint, **kwargs)
        self.max_wait_s = max_wait_s

    def _get_retry_after(self, http_response: httpx2.Response) -> int | float:
        value = (http_response.headers.get("retry-after") or "").strip()
        wait: float = self.default_retry_after
        if value.isdigit():
            wait = float(value)
        elif value:
            with contextlib.suppress(TypeError, ValueError):
                when = email.utils.parsedate_to_datetime(value)
                wait = max(0.0, (when - datetime.now(UTC)).total_seconds())
        return min(wait, self.max_wait_s)


# ----------------------------------------------------------------------------------------------
# State: last harvest date and OAI identifier -> object id, per endpoint, set and prefix
# ----------------------------------------------------------------------------------------------


class HarvestState:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, dict[str, Any]] = {}
        if path.is_file():
            try:
                self.data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise HarvestError(f"cannot read the harvest state {path}: {exc} (fix or remove it)") from exc

    @staticmethod
    def key(endpoint: str, set_spec: str, prefix: str) -> str:
        return f"{endpoint} set={set_spec} prefix={prefix}"

    def entry(self, endpoint: str, set_spec: str, prefix: str) -> dict[str, Any]:
        entry = self.data.setdefault(self.key(endpoint, set_spec, prefix), {})
        entry.setdefault("ids", {})
        return entry

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(self.path.name + ".partial")
        partial.write_text(json.dumps(self.data, indent=1, sort_keys=True, ensure_ascii=False), encoding="utf-8")
        os.replace(partial, self.path)


# ----------------------------------------------------------------------------------------------
# One harvest
# ----------------------------------------------------------------------------------------------


@dataclass
class HarvestSummary:
    endpoint: str
    from_: str | None
    next_from: str | None = None
    ingest: IngestSummary = field(default_factory=IngestSummary)
    deleted: int = 0
    # Deleted at the source but not (or no longer) in the collection.
    deleted_absent: int = 0

    def lines(self) -> list[str]:
        asked = f"changes since {self.from_}" if self.from_ else "everything"
        out = [f"harvested {self.endpoint} ({asked})", *self.ingest.lines()]
        out.append(f"{self.deleted + self.deleted_absent} deleted at the source: {self.deleted} deleted here")
        if self.deleted_absent:
            out[-1] += f", {self.deleted_absent} were not in the collection"
        if self.next_from:
            out.append(f"next harvest asks for changes since {self.next_from}")
        return out


def granular(stamp: str, granularity: str) -> str:
    """A datestamp in the endpoint's granularity (day-granular endpoints refuse seconds)."""
    return stamp if "T" in granularity else stamp[:10]


class Harvester:
    """Reads one ListRecords harvest as `Loaded` records; remembers deletions and the response date."""

    def __init__(
        self,
        endpoint: str,
        prefix: str,
        set_spec: str,
        from_: str | None,
        ids: dict[str, str],
        images: ImageReader | None,
        scythe: Scythe,
    ) -> None:
        self.endpoint = endpoint
        self.prefix = prefix
        self.set_spec = set_spec
        self.from_ = from_
        self.ids = ids
        self.images = images
        self.scythe = scythe
        self.read = READERS[prefix]
        self.deleted: list[str] = []
        # Objects whose record now gives another id (a renumbered object): the old one goes.
        self.stale: list[str] = []
        self.response_date: str | None = None

    def records(self) -> Iterator[Loaded]:
        try:
            for response in self.scythe.list_records(
                from_=self.from_, metadata_prefix=self.prefix, set_=self.set_spec or None
            ):
                try:
                    xml = response.xml
                except etree.XMLSyntaxError as exc:
                    raise HarvestError(f"{self.endpoint} answered ListRecords with no XML ({exc})") from exc
                if xml is None or xml.tag != f"{OAI}OAI-PMH":
                    raise HarvestError(f"{self.endpoint} answered ListRecords with XML that is not OAI-PMH")
                if self.response_date is None:
                    self.response_date = (xml.findtext(f"{OAI}responseDate") or "").strip() or None
                for record in xml.iterfind(f".//{OAI}record"):
                    item = self._record(record)
                    if item is not None:
                        yield item
        except NoRecordsMatch:
            return
        except OAIPMHException as exc:
            raise HarvestError(f"{self.endpoint} refused ListRecords: {type(exc).__name__}: {exc}") from exc
        except httpx2.HTTPError as exc:
            raise HarvestError(f"{self.endpoint}: {exc}") from exc

    def _record(self, record: etree._Element) -> Loaded | None:
        header = record.find(f"{OAI}header")
        identifier = (header.findtext(f"{OAI}identifier") if header is not None else "") or ""
        identifier = identifier.strip()
        if header is None or not identifier:
            return Loaded("(record without identifier)", skipped="record without header identifier")
        if header.get("status") == "deleted":
            self.deleted.append(identifier)
            return None
        metadata = record.find(f"{OAI}metadata")
        if metadata is None or len(metadata) == 0:
            return Loaded(identifier, skipped="record has no metadata")
        try:
            obj = self.read(identifier, metadata)
        except RecordError as exc:
            return Loaded(identifier, skipped=str(exc))
        previous = self.ids.get(identifier)
        if previous and previous != obj.id:
            self.stale.append(previous)
        self.ids[identifier] = obj.id
        loaded = Loaded(identifier, obj)
        source = obj.extra.get(EXTRA_IMAGE_SOURCE, "")
        if source and self.images is not None:
            try:
                obj.image.CopyFrom(self.images.read(source))
            except RecordError as exc:
                loaded.image_problem = str(exc)
        return loaded

    def deletion_ids(self) -> list[str]:
        """The object ids of the records deleted at the source (a record this state never saw is
        taken to have had its OAI identifier as id), and the stale ids of renumbered objects."""
        found = [self.ids.pop(identifier, identifier) for identifier in self.deleted]
        # A renumbered object's old id may have passed to another record since: that one stays.
        current = set(self.ids.values())
        return list(dict.fromkeys([*found, *(i for i in self.stale if i not in current)]))


def _scythe(args: argparse.Namespace) -> _BoundedScythe:
    return _BoundedScythe(
        args.url,
        max_wait_s=args.max_retry_wait,
        iterator=OAIResponseIterator,
        http_config=HTTPConfig(timeout=args.http_timeout, user_agent="vitrine-harvest"),
        retry_config=RetryConfig(
            max_retries=args.retries,
            default_retry_after=min(10.0, args.max_retry_wait),
            retry_on_transport_error=True,
            initial_backoff=1.0,
        ),
    )


def _granularity(scythe: Scythe, endpoint: str) -> str:
    try:
        identify = scythe.identify()
    except (OAIPMHException, httpx2.HTTPError, ValueError) as exc:
        raise HarvestError(f"{endpoint} does not answer Identify ({exc}): is it an OAI-PMH base URL?") from exc
    return str(getattr(identify, "granularity", None) or "YYYY-MM-DD")


async def _delete(args: argparse.Namespace, ids: list[str], summary: HarvestSummary) -> None:
    async with open_channel(args.address, tls_ca_file=args.tls_ca_file) as channel:
        stub = search_pb2_grpc.SearchServiceStub(channel)
        for start in range(0, len(ids), DELETE_BATCH):
            chunk = ids[start : start + DELETE_BATCH]
            answer = await stub.DeleteObjects(
                search_pb2.DeleteObjectsRequest(ids=chunk), timeout=120, metadata=bearer(args.token)
            )
            summary.deleted += answer.deleted
            summary.deleted_absent += len(chunk) - answer.deleted


async def run(args: argparse.Namespace) -> HarvestSummary:
    """One harvest as the CLI asks it: records in, deletions out, state saved when complete."""
    if args.from_ and not _DATE.match(args.from_):
        raise HarvestError(f"--from {args.from_!r}: use YYYY-MM-DD or YYYY-MM-DDThh:mm:ssZ")
    state = HarvestState(Path(args.state))
    entry = state.entry(args.url, args.set or "", args.metadata_prefix)
    with _scythe(args) as scythe:
        granularity = _granularity(scythe, args.url)
        from_ = args.from_ or (None if args.full else entry.get("last_response_date"))
        if from_:
            from_ = granular(from_, granularity)
        images = None
        if not args.no_images:
            images = ImageReader(Path.cwd(), max_bytes=int(args.max_image_mb * 1024 * 1024))
        harvester = Harvester(args.url, args.metadata_prefix, args.set or "", from_, entry["ids"], images, scythe)
        summary = HarvestSummary(args.url, from_)
        started = time.perf_counter()
        # The next page is fetched (in this thread) when ingest asks for more records: at most
        # `concurrency` batches wait for the service meanwhile, so memory stays bounded.
        summary.ingest = await ingest(
            harvester.records(),
            args.address,
            batch_size=args.batch_size,
            concurrency=args.concurrency,
            progress=not args.quiet,
            wait_s=args.wait,
            description=f"harvest {args.metadata_prefix}",
            token=args.token,
            tls_ca_file=args.tls_ca_file,
        )
    deletions = harvester.deletion_ids()
    if deletions:
        await _delete(args, deletions, summary)
    summary.ingest.seconds = time.perf_counter() - started
    if harvester.response_date:
        entry["last_response_date"] = harvester.response_date
    entry["granularity"] = granularity
    summary.next_from = entry.get("last_response_date")
    state.save()
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("url", help="The endpoint's OAI-PMH base URL.")
    parser.add_argument(
        "--metadata-prefix", required=True, choices=sorted(READERS), help="Dublin Core (oai_dc) or LIDO (lido)."
    )
    parser.add_argument("--set", default="", help="Harvest only this set (setSpec).")
    parser.add_argument(
        "--from",
        dest="from_",
        default="",
        metavar="DATE",
        help="Changes since this date (YYYY-MM-DD or YYYY-MM-DDThh:mm:ssZ) instead of the last harvest's.",
    )
    parser.add_argument("--full", action="store_true", help="Everything, ignoring the last harvest's date.")
    parser.add_argument(
        "--state",
        default=os.environ.get("VITRINE_HARVEST_STATE", DEFAULT_STATE),
        help="State file: last harvest per endpoint, set and prefix (env VITRINE_HARVEST_STATE, default %(default)s).",
    )
    parser.add_argument("--no-images", action="store_true", help="Do not fetch the records' images.")
    parser.add_argument("--retries", type=int, default=5, help="Retries of a request on 503 or a dropped connection.")
    parser.add_argument(
        "--max-retry-wait", type=float, default=300.0, help="Longest wait a 503's Retry-After may ask (s)."
    )
    parser.add_argument("--http-timeout", type=float, default=60.0, help="Seconds one OAI-PMH request may take.")


async def cmd_harvest(args: argparse.Namespace) -> int:
    summary = await run(args)
    for line in summary.lines():
        print(line)
    sys.stdout.flush()
    return 0
