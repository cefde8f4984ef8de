"""Which objects of an UpsertObjects request are refused, and why.

UpsertObjects stores every object it can and refuses only the wrong ones: each refused object is
answered as an `ObjectError` (its index in the request, its id, a google.rpc.Status whose
BadRequest names the field, e.g. `objects[17].image`, and says what to fix), and, for clients
that predate `errors`, in `skipped` too. A request whose every object is wrong stored nothing: it
answers INVALID_ARGUMENT with the same violations in its own status details. Problems of the
request itself (no objects, too many) stay request-level errors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import grpc

from vitrine.common import rich_errors
from vitrine.common.errors import ServiceError
from vitrine.common.validation import require_count
from vitrine.v1 import common_pb2, search_pb2

MAX_ID_CHARS = 512
MAX_IMAGE_ORIGIN_CHARS = 2048
# Violations quoted in the message of an all-refused request (all of them are in its details).
MESSAGE_VIOLATIONS = 5


@dataclass(frozen=True)
class Refusal:
    index: int
    id: str
    # Path of the wrong field from the request ("objects[3].id"), and what to fix.
    field: str
    description: str
    # What `skipped` says (kept as it was before `errors` existed, where it said something).
    skipped_reason: str


class Refusals:
    """The refused objects of one request, by index (one refusal each: the first found)."""

    def __init__(self, objects: Sequence[common_pb2.CollectionObject]) -> None:
        self.objects = objects
        self.by_index: dict[int, Refusal] = {}

    def refuse(self, index: int, field: str, description: str, skipped_reason: str = "") -> None:
        if index in self.by_index:
            return
        path = f"objects[{index}]" + (f".{field}" if field else "")
        self.by_index[index] = Refusal(
            index, self.objects[index].id, path, description, skipped_reason or f"{path}: {description}"
        )

    def image_too_large(self, index: int, max_mb: float) -> None:
        size = len(self.objects[index].image.data) / 2**20
        self.refuse(
            index,
            "image.data",
            f"image has {size:.1f} MiB, larger than {max_mb:g} MiB: send a smaller rendition or its URI",
        )

    def image_not_embedded(self, index: int, why: str, has_text: bool) -> None:
        # Refused rather than stored without the image: stored so, it would look complete.
        fix = "send a JPEG, PNG, WebP, GIF, BMP or TIFF the embedder can decode, or no image"
        skipped = ("" if has_text else "no metadata text to embed, and ") + f"image not embedded: {why}"
        self.refuse(index, "image", f"image not embedded: {why}; {fix}", skipped)

    def nothing_to_embed(self, index: int, image_problem: str = "") -> None:
        self.refuse(
            index,
            "",
            "nothing to embed: give a title, artist, description or other metadata text, or an image",
            f"no metadata text to embed, and {image_problem}"
            if image_problem
            else "no metadata text to embed and no image",
        )

    def __contains__(self, index: int) -> bool:
        return index in self.by_index

    def all_refused(self) -> bool:
        return len(self.by_index) == len(self.objects)

    def ordered(self) -> list[Refusal]:
        return [self.by_index[i] for i in sorted(self.by_index)]

    def fill(self, answer: search_pb2.UpsertObjectsResponse) -> None:
        """Report every refusal in the answer's `errors` and `skipped`."""
        for r in self.ordered():
            answer.errors.add(
                index=r.index,
                id=r.id,
                status=rich_errors.status(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"{r.field}: {r.description}",
                    [rich_errors.bad_request([(r.field, r.description)])],
                ),
            )
            answer.skipped.add(id=r.id, reason=r.skipped_reason)

    def error(self) -> ServiceError:
        """INVALID_ARGUMENT for a request of which every object was refused."""
        refused = self.ordered()
        quoted = "; ".join(f"{r.field}: {r.description}" for r in refused[:MESSAGE_VIOLATIONS])
        left = len(refused) - MESSAGE_VIOLATIONS
        more = f"; and {left} more (see the status details)" if left > 0 else ""
        return ServiceError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"every object of the request was refused, nothing was stored: {quoted}{more}",
            [rich_errors.bad_request([(r.field, r.description) for r in refused])],
        )


def check_objects(objects: Sequence[common_pb2.CollectionObject], max_objects: int) -> Refusals:
    """The checks that need no embedding: ids (present, not too long, once a request) and image
    origins. Raises for a request-level problem (no objects, too many)."""
    require_count(objects, "objects", max_objects)
    refusals = Refusals(objects)
    first_at: dict[str, int] = {}
    for i, obj in enumerate(objects):
        if not obj.id.strip():
            refusals.refuse(i, "id", "id is empty: every object needs its museum id")
        elif len(obj.id) > MAX_ID_CHARS:
            refusals.refuse(i, "id", f"id has {len(obj.id)} characters: at most {MAX_ID_CHARS}")
        elif len(obj.image.origin) > MAX_IMAGE_ORIGIN_CHARS:
            refusals.refuse(
                i,
                "image.origin",
                f"image.origin has {len(obj.image.origin)} characters: at most {MAX_IMAGE_ORIGIN_CHARS} "
                "(a file path or URL)",
            )
        if obj.id in first_at:
            # Neither copy is stored: which of the two the museum meant cannot be known.
            first = first_at[obj.id]
            twice = f"id {obj.id!r} appears twice (objects[{first}] and objects[{i}]): send each object once a request"
            refusals.refuse(first, "id", twice)
            refusals.refuse(i, "id", twice)
        elif obj.id.strip():
            first_at[obj.id] = i
    return refusals
