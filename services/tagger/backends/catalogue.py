"""The tags of the objects catalogued next to this one.

Museums number what arrives together consecutively: the pages of a sketchbook, the plates of a
print series, a donor's gift. Such neighbours share subjects far more than two objects whose
texts merely look alike. An accession number is read as a series (everything before its last
run of digits: "D", "T0", "1987.123.") and a number; the neighbours are the nearest tagged
training objects of the same series, at most `MAX_GAP` numbers away, weighted by 1 / (1 + gap).
The object itself (same id) is never its own neighbour.
"""

from __future__ import annotations

import json
import re
from bisect import bisect_left
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from vitrine.tagger.backends.base import EVIDENCE_LIMIT, Backend, Inputs, carries, tagged_mask, top_k_sparse
from vitrine.tagger.suggestions import CatalogueNeighbour, Evidence

if TYPE_CHECKING:
    from vitrine.tagger.ensemble import Ranked

# Nearest tagged neighbours taken on each side, and the widest gap still counted as "next to".
NEIGHBOURS_EACH_SIDE = 3
MAX_GAP = 20

_ACCESSION = re.compile(r"^(.*?)(\d+)$")


def accession(object_id: str) -> tuple[str, int] | None:
    """("D", 12345) for "D12345"; None for an id that does not end in a number."""
    match = _ACCESSION.match(object_id.strip())
    if match is None or len(match.group(2)) > 15:
        return None
    return match.group(1), int(match.group(2))


class CatalogueNeighbours(Backend):
    name = "catalogue"

    def train(self, inputs: Inputs, labels: sp.csr_matrix, seed: int) -> None:
        tagged = tagged_mask(labels)
        entries = []
        for row, (obj, has_tags) in enumerate(zip(inputs.objects, tagged, strict=True)):
            key = accession(obj.id) if has_tags else None
            if key is not None:
                entries.append((key[0], key[1], obj.id, obj.title, row))
        entries.sort()
        self.series: dict[str, tuple[int, int]] = {}  # series -> [start, end) in the arrays below
        for position, (series, *_rest) in enumerate(entries):
            start, _ = self.series.get(series, (position, position))
            self.series[series] = (start, position + 1)
        self.numbers = np.array([e[1] for e in entries], dtype=np.int64)
        self.ids = [e[2] for e in entries]
        self.titles = [e[3] for e in entries]
        self.labels = labels[[e[4] for e in entries]].tocsr().astype(np.float32)

    def neighbours(self, object_id: str) -> list[tuple[int, int]]:
        """(row of the index, gap) of the object's catalogue neighbours, nearest first."""
        key = accession(object_id)
        if key is None or key[0] not in self.series:
            return []
        start, end = self.series[key[0]]
        middle = start + bisect_left(self.numbers[start:end], key[1])
        low, high = max(start, middle - NEIGHBOURS_EACH_SIDE), min(end, middle + NEIGHBOURS_EACH_SIDE + 1)
        found = []
        for position in range(low, high):
            gap = abs(int(self.numbers[position]) - key[1])
            if 0 < gap <= MAX_GAP or (gap == 0 and self.ids[position] != object_id):
                found.append((position, gap))
        found.sort(key=lambda p: p[1])
        return found

    def carrying(self, object_id: str, tag: int) -> list[tuple[str, str, int]]:
        """(id, title, gap) of the object's catalogue neighbours that carry the tag, nearest first."""
        return [
            (self.ids[row], self.titles[row], gap)
            for row, gap in self.neighbours(object_id)
            if carries(self.labels, row, tag)
        ]

    def explain(self, ranked: Ranked, positions: Sequence[np.ndarray]) -> list[list[Evidence]] | None:
        """The object's catalogue neighbours that carry each suggested tag."""
        found = []
        for obj, kept in zip(ranked.inputs.objects, positions, strict=True):
            found.append(
                [
                    Evidence(
                        catalogue_neighbours=[
                            CatalogueNeighbour(i, title, gap)
                            for i, title, gap in self.carrying(obj.id, int(ranked.candidates.tags[position]))
                        ][:EVIDENCE_LIMIT]
                    )
                    for position in kept
                ]
            )
        return found

    def suggest(self, inputs: Inputs, limit: int) -> sp.csr_matrix:
        rows, cols, values = [], [], []
        for row, obj in enumerate(inputs.objects):
            found = self.neighbours(obj.id)
            if not found:
                continue
            positions = [p for p, _ in found]
            weights = np.array([1.0 / (1.0 + gap) for _, gap in found], dtype=np.float32)
            # Weighted share of the neighbours carrying each tag: 1.0 when all of them do.
            shares = sp.csr_matrix(weights / weights.sum()) @ self.labels[positions]
            rows += [row] * shares.nnz
            cols += shares.indices.tolist()
            values += shares.data.tolist()
        matrix = sp.csr_matrix(
            (np.asarray(values, dtype=np.float32), (rows, cols)), shape=(len(inputs), self.labels.shape[1])
        )
        return top_k_sparse(matrix, limit)

    def save(self, directory: Path) -> None:
        index = {"ids": self.ids, "titles": self.titles, "series": self.series}
        (directory / "catalogue.json").write_text(json.dumps(index))
        np.save(directory / "numbers.npy", self.numbers)
        sp.save_npz(directory / "labels.npz", self.labels)

    def load(self, directory: Path) -> None:
        index = json.loads((directory / "catalogue.json").read_text())
        self.ids, self.titles = index["ids"], index["titles"]
        self.series = {s: (int(a), int(b)) for s, (a, b) in index["series"].items()}
        self.numbers = np.load(directory / "numbers.npy", allow_pickle=False)
        self.labels = sp.load_npz(directory / "labels.npz").tocsr()
