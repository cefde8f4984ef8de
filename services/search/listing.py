"""ListObjects: every stored object, page by page, so a museum system can reconcile what Vitrine
holds (and `vitrine-search export` can write it out).

Pages follow the store's point order (the scroll of either engine), not a ranking, so a listing
costs one page read per call however deep it goes. The page token is opaque to clients: base64
of a small JSON holding the first point key of the next page and a fingerprint of the filter it
was issued for; a token that does not decode to that, or that comes with another filter, is
refused. Objects written or deleted while a client pages may or may not show up; every object
stored before the first call and untouched until the last is listed exactly once.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import uuid
from collections.abc import Mapping
from typing import Any

from google.protobuf import field_mask_pb2

from vitrine.common.errors import invalid_argument
from vitrine.common.records import payload_to_object
from vitrine.common.validation import bounded_int
from vitrine.search.store import AsyncStore, Conditions
from vitrine.v1 import common_pb2, search_pb2

TOKEN_VERSION = 1
MACHINE_TAGS = "machine_tags"
# Read-mask paths and the payload keys each one needs (the id always comes).
_OBJECT_FIELDS = [f.name for f in common_pb2.CollectionObject.DESCRIPTOR.fields if f.name != "id"]
PAYLOAD_KEYS: dict[str, tuple[str, ...]] = {
    **{name: (name,) for name in _OBJECT_FIELDS},
    "image": ("image_uri", "image_origin"),
    MACHINE_TAGS: ("machine_tags", "machine_tags_version"),
}


def filter_fingerprint(f: search_pb2.Filter) -> str:
    return hashlib.sha256(f.SerializeToString(deterministic=True)).hexdigest()[:16]


def encode_token(start: str, fingerprint: str) -> str:
    raw = json.dumps({"v": TOKEN_VERSION, "start": start, "filter": fingerprint}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_token(token: str, fingerprint: str) -> str:
    """The point key a page token starts at; INVALID_ARGUMENT for a token this service did not
    issue, or issued for another filter."""
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if not isinstance(data, dict) or data.get("v") != TOKEN_VERSION:
            raise ValueError("not a version this service issues")
        start = str(uuid.UUID(str(data["start"])))
        issued_for = str(data["filter"])
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError):
        raise invalid_argument(
            f"page.page_token {token[:40]!r} is not one this service issued: pass back the next_page_token "
            "of the previous ListObjects answer unchanged, or none for the first page"
        ) from None
    if issued_for != fingerprint:
        raise invalid_argument(
            "page.page_token was issued for another filter: keep the filter of the first page while paging, "
            "or start again without a token"
        )
    return start


def payload_fields(mask: field_mask_pb2.FieldMask) -> tuple[list[str] | None, bool]:
    """The payload keys a read mask needs (None: all of them) and whether machine tags are wanted."""
    if not mask.paths:
        return None, True
    keys: list[str] = []
    for i, path in enumerate(mask.paths):
        if path == "id":
            continue
        if path not in PAYLOAD_KEYS:
            allowed = ", ".join(["id", *PAYLOAD_KEYS])
            raise invalid_argument(
                f"read_mask.paths[{i}] {path[:60]!r} is not a field of a listed object: give {allowed}"
            )
        keys.extend(PAYLOAD_KEYS[path])
    return list(dict.fromkeys(keys)), MACHINE_TAGS in mask.paths


def listed(museum_id: str, payload: Mapping[str, Any], with_tags: bool) -> search_pb2.ListedObject:
    item = search_pb2.ListedObject(object=payload_to_object(museum_id, payload))
    if with_tags:
        for label, score in payload.get("machine_tags") or []:
            item.machine_tags.add(label=str(label), score=float(score))
        item.machine_tags_version = str(payload.get("machine_tags_version") or "")
    return item


async def list_objects(
    store: AsyncStore,
    request: search_pb2.ListObjectsRequest,
    conditions: Conditions | None,
    default_page_size: int,
    max_page_size: int,
) -> search_pb2.ListObjectsResponse:
    size = bounded_int(request.page.page_size, "page.page_size", default_page_size, max_page_size)
    fingerprint = filter_fingerprint(request.filter)
    start = decode_token(request.page.page_token, fingerprint) if request.page.page_token else None
    keys, with_tags = payload_fields(request.read_mask)
    points, following = await store.scroll(conditions, size, start, keys)
    answer = search_pb2.ListObjectsResponse(objects=[listed(p.id, p.payload, with_tags) for p in points])
    answer.page.total_size = await store.count(conditions)
    if following is not None:
        answer.page.next_page_token = encode_token(following, fingerprint)
    return answer
