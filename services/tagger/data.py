"""Training and evaluation documents: collection objects with their curators' subjects.

A document is the object as the models may read it (every field except `subjects` and
`subject_paths`) plus its gold subjects. Files are JSON lines in the shared Tate format (or
any format `vitrine.common.records` reads); subjects map to the vocabulary's tag indices. A
record's image (a file next to the records file, or a URL) is attached as bytes. A training
job may give the file as an http(s) URL: `download` fetches it to a local file first.
"""

from __future__ import annotations

import logging
import random
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from vitrine.common.objects import object_text
from vitrine.common.records import ImageReader, RecordError, image_source, read_rows, record_to_object
from vitrine.common.vocabulary import Vocabulary
from vitrine.v1 import common_pb2

log = logging.getLogger("vitrine.tagger.data")

TURNER = "Joseph Mallord William Turner"
DOWNLOAD_CHUNK = 1 << 20
TOO_BIG = " (--max-download-mb)"


class DownloadError(ValueError):
    """The data URL could not be fetched (the message says why)."""


def is_url(source: str) -> bool:
    return urllib.parse.urlsplit(source).scheme in ("http", "https")


def download(url: str, directory: Path, timeout_s: float, max_bytes: int) -> Path:
    """Fetch `url` into `directory`, named as the URL's last path segment so that its extension
    (.jsonl, .jsonl.gz, .csv) tells the readers the format. `timeout_s` bounds both each wait for
    the server and the whole transfer; more than `max_bytes` is refused."""
    name = Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path)).name
    if not name or name.startswith("."):
        raise DownloadError(f"{url}: the URL's path must end in a file name such as objects.jsonl.gz (its format)")
    target = directory / name
    deadline = time.monotonic() + timeout_s
    request = urllib.request.Request(url, headers={"User-Agent": "vitrine-tagger"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response, target.open("wb") as out:
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise DownloadError(f"{url}: {declared} bytes, more than the {max_bytes} bytes allowed{TOO_BIG}")
            size = 0
            while chunk := response.read(DOWNLOAD_CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise DownloadError(f"{url}: more than the {max_bytes} bytes allowed{TOO_BIG}")
                if time.monotonic() > deadline:
                    raise DownloadError(f"{url}: not downloaded within {timeout_s} s (--download-timeout-s)")
                out.write(chunk)
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        raise DownloadError(f"{url}: {getattr(exc, 'reason', exc)}") from exc
    log.info("data downloaded", extra={"url": url, "path": str(target), "bytes": size})
    return target


def local_copy(source: str, directory: Path, timeout_s: float, max_bytes: int) -> str:
    """`source` itself when it is a local path; a downloaded copy in `directory` for a URL."""
    if not is_url(source):
        return source
    sub = directory / f"{len(list(directory.iterdir()))}"
    sub.mkdir()  # two URLs may end in the same file name (train/objects.jsonl, dev/objects.jsonl)
    return str(download(source, sub, timeout_s, max_bytes))


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
