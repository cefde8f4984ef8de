"""What every service reads from a collection object the same way."""

from __future__ import annotations

from vitrine.v1 import common_pb2


def object_text(obj: common_pb2.CollectionObject) -> str:
    """The metadata text embedded for an object (and matched by text queries): title, artist,
    date, medium, classification, movements, description, one sentence each. Curators' subject
    tags are left out so that the same text can serve to suggest tags without echoing them."""
    parts = [
        obj.title,
        f"by {obj.artist}" if obj.artist else "",
        obj.date,
        obj.medium,
        obj.classification,
        f"Movements: {', '.join(obj.movements)}" if obj.movements else "",
        obj.description,
    ]
    return ". ".join(p.strip().rstrip(".") for p in parts if p and p.strip())
