"""ListObjects' page tokens and read masks (search/listing.py): only tokens the service issued,
for the filter they were issued with; read masks of known fields only."""

from __future__ import annotations

import base64

import pytest
from google.protobuf import field_mask_pb2
from hypothesis import given
from hypothesis import strategies as st

from vitrine.common.errors import ServiceError
from vitrine.search.listing import decode_token, encode_token, filter_fingerprint, listed, payload_fields
from vitrine.v1 import search_pb2

START = "6d97f1bf-5cd8-5d8b-9547-19efec11922f"


def test_a_token_decodes_for_its_own_filter_only() -> None:
    turner = filter_fingerprint(search_pb2.Filter(artists=["Turner"]))
    token = encode_token(START, turner)
    assert decode_token(token, turner) == START
    with pytest.raises(ServiceError, match="another filter"):
        decode_token(token, filter_fingerprint(search_pb2.Filter()))


@pytest.mark.parametrize(
    "token",
    [
        "12",
        "not a token at all",
        base64.urlsafe_b64encode(b'{"v":2,"start":"' + START.encode() + b'","filter":"x"}').decode(),
        base64.urlsafe_b64encode(b'{"v":1,"start":"not-a-uuid","filter":"x"}').decode(),
        base64.urlsafe_b64encode(b"[1, 2]").decode(),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    ],
)
def test_tokens_it_did_not_issue_are_refused(token: str) -> None:
    with pytest.raises(ServiceError, match="is not one this service issued"):
        decode_token(token, "x")


@given(st.text(max_size=80))
def test_any_text_is_a_deliberate_refusal_never_a_crash(token: str) -> None:
    try:
        decode_token(token, filter_fingerprint(search_pb2.Filter()))
    except ServiceError as exc:
        assert "page_token" in exc.message


def test_read_masks_name_the_payload_they_need() -> None:
    assert payload_fields(field_mask_pb2.FieldMask()) == (None, True)
    keys, tags = payload_fields(field_mask_pb2.FieldMask(paths=["id", "title", "image"]))
    assert keys == ["title", "image_uri", "image_origin"] and not tags
    assert payload_fields(field_mask_pb2.FieldMask(paths=["machine_tags"]))[1]
    with pytest.raises(ServiceError, match=r"read_mask.paths\[1\] 'price'"):
        payload_fields(field_mask_pb2.FieldMask(paths=["title", "price"]))


def test_listed_objects_carry_their_machine_tags() -> None:
    payload = {"title": "Ship", "machine_tags": [["sea", 0.91], ["ship", 0.8]], "machine_tags_version": "v3"}
    item = listed("T1", payload, with_tags=True)
    assert item.object.title == "Ship" and item.machine_tags_version == "v3"
    assert [(t.label, round(t.score, 2)) for t in item.machine_tags] == [("sea", 0.91), ("ship", 0.8)]
    assert not listed("T1", payload, with_tags=False).machine_tags
