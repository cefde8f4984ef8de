"""Training and evaluation documents: collection objects with their curators' subjects.

A document is the object as the models may read it (every field except `subjects` and
`subject_paths`) plus its gold subjects. Files are JSON lines in the shared Tate format (or
any format `vitrine.search.records` reads); subjects map to the vocabulary's tag indices. A
record's image (a file next to the records file, or a URL) is attached as bytes.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from vitrine.common.objects import object_text
from vitrine.search.records import ImageReader, RecordError, image_source, read_rows, record_to_object
from vitrine.tagger.vocabulary import Vocabulary
from vitrine.v1 import common_pb2

log = logging.getLogger("vitrine.tagger.data")

TURNER = "Joseph Mallord William Turner"


@dataclass
class Document:
    obj: common_pb2.CollectionObject  # without subjects
    subjects: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return self.obj.id

    @property
    def text(self) -> str:
        return object_text(self.obj)


def document_from_object(obj: common_pb2.CollectionObject) -> Document:
    """Split an object into what the models may read and its existing subjects."""
    subjects = list(obj.subjects)
    bare = common_pb2.CollectionObject()
    bare.CopyFrom(obj)
    del bare.subjects[:]
    return Document(bare, subjects)


def load_documents(path: str | Path, limit: int | None = None) -> list[Document]:
    docs: list[Document] = []
    images = ImageReader(Path(path).parent)
    for _, row in read_rows(path):
        if isinstance(row, str):
            continue  # unparseable line: the records reader names it; nothing to learn from
        row = dict(row)
        row.pop("subject_paths", None)
        obj = record_to_object(row)
        source = image_source(row)
        if source:
            try:
                obj.image.CopyFrom(images.read(source))
            except RecordError as exc:
                log.warning("object kept without its image", extra={"object_id": obj.id, "reason": str(exc)})
        docs.append(document_from_object(obj))
        if limit and len(docs) >= limit:
            break
    return docs


def sample(docs: Sequence[Document], n: int, seed: int) -> list[Document]:
    """A seeded sample of `n` documents in their original order."""
    if n >= len(docs):
        return list(docs)
    keep = sorted(random.Random(seed).sample(range(len(docs)), n))
    return [docs[i] for i in keep]


def label_matrix(docs: Sequence[Document], vocabulary: Vocabulary) -> sp.csr_matrix:
    """Documents × tags, 1 where the document carries the tag (tags outside the vocabulary are
    left out)."""
    rows, cols = [], []
    for row, doc in enumerate(docs):
        for subject in set(doc.subjects):
            index = vocabulary.index.get(subject)
            if index is not None:
                rows.append(row)
                cols.append(index)
    data = np.ones(len(rows), dtype=np.float32)
    return sp.csr_matrix((data, (rows, cols)), shape=(len(docs), len(vocabulary)))


def tag_counts(labels: sp.csr_matrix) -> np.ndarray:
    return np.asarray(labels.sum(axis=0)).ravel().astype(np.int64)


def split_holdout(n: int, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of (base-model training, held-back combiner slice)."""
    order = np.random.default_rng(seed).permutation(n)
    cut = round(n * (1 - share))
    return np.sort(order[:cut]), np.sort(order[cut:])


def texts(docs: Iterable[Document]) -> list[str]:
    return [d.text for d in docs]
