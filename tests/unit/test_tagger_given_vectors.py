"""A SuggestTags request may bring the object's text vector (search's, at ingest): used when it
comes from the version's text model, ignored when from another, refused when malformed."""

from __future__ import annotations

import numpy as np
import pytest

from vitrine.common.errors import ServiceError
from vitrine.search.machine_tags import MachineTagger, TextVectors
from vitrine.tagger.embeddings import ToEmbed
from vitrine.tagger.transport import given_text_vectors
from vitrine.v1 import common_pb2, tagger_pb2


def unit(dimension: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=dimension).astype(np.float32)
    return v / np.linalg.norm(v)


def request(object_id: str, values: np.ndarray | None = None, model: str = "minilm") -> tagger_pb2.SuggestTagsRequest:
    message = tagger_pb2.SuggestTagsRequest(object=common_pb2.CollectionObject(id=object_id, title="Study"))
    if values is not None:
        message.text_vector.CopyFrom(common_pb2.Vector(values=values.tolist(), model=model, dimension=len(values)))
    return message


def test_vectors_of_the_versions_model_are_used_and_others_ignored() -> None:
    mine, other = unit(8, 1), unit(8, 2)
    given = given_text_vectors([request("a", mine), request("b"), request("c", other, "mpnet")], "minilm", 8)
    assert list(given) == [0]
    np.testing.assert_allclose(given[0], mine)


@pytest.mark.parametrize(
    ("values", "message"),
    [(unit(6), "has 6 values"), (unit(8) * 3, "has length 3"), (np.full(8, np.nan, np.float32), "has length nan")],
)
def test_a_malformed_vector_of_the_versions_model_is_refused(values: np.ndarray, message: str) -> None:
    with pytest.raises(ServiceError, match=message) as caught:
        given_text_vectors([request("a", values)], "minilm", 8)
    assert "text_vector of object 'a'" in str(caught.value)


def test_objects_with_given_vectors_are_not_embedded_again() -> None:
    objects = [common_pb2.CollectionObject(id=i, title=f"Title {i}") for i in "abc"]
    todo = ToEmbed.plan(objects, read_images=False, have_text={1})
    assert todo.text_rows == [0, 2] and todo.texts == ["Title a", "Title c"]


def test_search_sends_its_text_vector_with_its_model_name() -> None:
    tagger = MachineTagger("127.0.0.1:1", top_k=5, min_score=0.1)
    vector = unit(8)
    obj = common_pb2.CollectionObject(id="a", title="Study")
    sent = tagger._request(obj, TextVectors("mpnet", {"a": vector}))
    assert (sent.text_vector.model, sent.text_vector.dimension) == ("mpnet", 8)
    np.testing.assert_allclose(sent.text_vector.values, vector, rtol=1e-6)
    assert not tagger._request(obj, TextVectors("mpnet", {})).HasField("text_vector")
