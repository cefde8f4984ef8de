"""The catalogue-neighbour model: accession numbers read as series + number, the nearest tagged
objects of the same series vote for their tags, the object itself never counts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from vitrine.tagger.backends.base import Inputs
from vitrine.tagger.backends.catalogue import MAX_GAP, CatalogueNeighbours, accession
from vitrine.v1 import common_pb2


@pytest.mark.parametrize(
    ("object_id", "expected"),
    [
        ("D12345", ("D", 12345)),
        ("A00007", ("A", 7)),
        ("1987.123.4", ("1987.123.", 4)),
        (" T05010 ", ("T", 5010)),
        ("untitled", None),
        ("", None),
        ("X" + "9" * 30, None),  # not a catalogue number: no overflow, no match
    ],
)
def test_accession_numbers_are_series_and_number(object_id: str, expected: tuple[str, int] | None) -> None:
    assert accession(object_id) == expected


def inputs(ids: list[str]) -> Inputs:
    objects = [common_pb2.CollectionObject(id=i, title=f"title of {i}") for i in ids]
    return Inputs(objects, np.zeros((len(ids), 1), np.float32), sp.csr_matrix((len(ids), 1)))


@pytest.fixture
def model(tmp_path: Path) -> CatalogueNeighbours:
    ids = ["D100", "D101", "D103", "D400", "T101", "E1", "no-number"]
    tags = [[0], [0, 1], [1], [2], [3], [], [4]]  # E1 is untagged: it never votes
    pairs = [(row, tag) for row, row_tags in enumerate(tags) for tag in row_tags]
    rows, cols = zip(*pairs, strict=True)
    labels = sp.csr_matrix((np.ones(len(pairs), np.float32), (rows, cols)), shape=(len(ids), 5))
    trained = CatalogueNeighbours(None)  # type: ignore[arg-type]  # the context is not used
    trained.train(inputs(ids), labels, seed=1)
    trained.save(tmp_path)
    loaded = CatalogueNeighbours(None)  # type: ignore[arg-type]
    loaded.load(tmp_path)
    return loaded


def test_nearest_tagged_objects_of_the_same_series_vote(model: CatalogueNeighbours) -> None:
    scores = model.suggest(inputs(["D102", "D100", "T100", "E2", "Q1", "nothing"]), 10).toarray()
    # D102: D101 and D103 one number away (weight 1/2 each), D100 two away (1/3); D400 too far.
    weights = {"D100": 1 / 3, "D101": 1 / 2, "D103": 1 / 2}
    total = sum(weights.values())
    assert scores[0, 0] == pytest.approx((weights["D100"] + weights["D101"]) / total)
    assert scores[0, 1] == pytest.approx((weights["D101"] + weights["D103"]) / total)
    assert scores[0, 2] == 0 and scores[0, 3] == 0
    # D100 itself is in training: its own tags do not count, only its neighbours'.
    assert [row for row, _ in model.neighbours("D100")] == [1, 2]
    assert scores[1, 0] == pytest.approx((1 / 2) / (1 / 2 + 1 / 4))
    # Another series (T), an untagged neighbour (E1), an unknown series, no number: nothing.
    assert scores[2, 3] == pytest.approx(1.0) and scores[2, :3].sum() == 0
    assert scores[3:].sum() == 0


def test_neighbours_beyond_the_widest_gap_do_not_count(model: CatalogueNeighbours) -> None:
    assert model.neighbours(f"D{400 + MAX_GAP}") == [(3, MAX_GAP)]
    assert model.neighbours(f"D{400 + MAX_GAP + 1}") == []


def test_the_explanation_names_neighbours_carrying_the_tag(model: CatalogueNeighbours) -> None:
    assert model.carrying("D102", 1) == [("D101", "title of D101", 1), ("D103", "title of D103", 1)]
    assert model.carrying("D102", 0) == [("D101", "title of D101", 1), ("D100", "title of D100", 2)]
    assert model.carrying("D102", 2) == []
