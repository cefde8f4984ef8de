"""Search benchmark (issue #13): the vector store against brute force, on the same vectors, in one run.

For each size (10k and 100k objects by default), on the same embedding-like vectors and queries:

- ingest: objects per second through the store's `upsert` in batches (no model time), alone and
  with the content-hash lookup the UpsertObjects RPC does before each batch;
- queries, before `optimize()` (the store scans) and after it (HNSW; the build is timed):
  numpy brute force (matrix @ q, argpartition) and FAISS IndexFlatIP, with all cores and with
  one, against the store's plain query, two filters (about 2% and about 20% of the objects) and
  best-score recommend (3 liked objects, 1 disliked, the 4 excluded). p50/p99 latency, recall@12
  against the exact answer (exact filtered answer for filtered queries, exact best-score for
  recommend) and the ratios. The brute-force methods and the store's queries each run
  interleaved among themselves, query by query, so that load from other work on this shared
  machine falls on all the methods of a group alike;
- memory and disk: a fresh process that only opens the stored collection and serves the queries
  (its RSS is what a search service pays for the collection), the bytes on disk, and the
  benchmark's own peak RSS.

The vectors are not uniform random (nearest neighbours of uniform random vectors in 768-d are all
alike, which no index, and no user, ever sees). `EmbeddingLike` draws them from a mixture of a few
hundred anisotropic clusters around a shared mean direction, with a decaying spectrum, tuned so
that a 4,000-vector sample has the statistics of real embeddings (`REAL_REFERENCE`, MPNet on Tate
catalogue texts, recomputed by `--calibrate`); each run reports both side by side. Payloads
(artist, classification, year, subjects, ...) follow the clusters as catalogue fields follow
content.

Results: bench/results/search.json and search.md. Numbers are comparable only within one run on
one machine. `--quick` is a 10k-only smoke run (under a minute).

    .venv/bin/python -m bench.search [--sizes 10000,100000] [--queries 200] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from bench.search_rpc import rpc_probe
from vitrine.search import keywords
from vitrine.search import store as store_module
from vitrine.search.indexing import IndexBuilder
from vitrine.search.store import TAG_TERMS_FIELD, AsyncStore, Conditions, EmbeddedStore, StoredPoint, point_key

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
K = 12  # results a query asks for (a page of the Search RPC)
DIM = 768
WARMUP = 10
SCAN_QUERIES = 100  # queries while the store scans (slow at 100k, and not what the bar is about)
COLLECTION = "bench"
# Sparse vectors the store keeps next to the dense ones (keyword search), when it has them.
SPARSE_NAMES: tuple[str, ...] = tuple(getattr(store_module, "SPARSE_VECTOR_NAMES", ()))

# Statistics of real embeddings, for comparison with the generator: all-mpnet-base-v2 on the
# metadata text of 4,000 random Tate objects, by `--calibrate` (`real_embeddings`, `corpus_stats`).
REAL_REFERENCE = {
    "source": "all-mpnet-base-v2 on 4,000 Tate catalogue texts",
    "nn1_cosine": 0.839,
    "nn12_cosine": 0.753,
    "median_cosine": 0.486,
    "mean_vector_norm": 0.705,
    "pca_variance_top10": 0.386,
    "pca_variance_top50": 0.686,
    "pca_variance_top200": 0.941,
    "participation_ratio": 40.7,
    "local_intrinsic_dim": 16.4,
}
TATE = Path("/work/shared/data/tate/tate_train.jsonl.gz")

CLASSIFICATIONS = ("print", "drawing", "painting", "photograph", "sculpture", "textile", "ceramic", "manuscript")
CLASS_WEIGHTS = np.array([0.27, 0.22, 0.2, 0.14, 0.07, 0.04, 0.03, 0.03])
MEDIUMS = {
    "print": ("etching", "lithograph", "woodcut", "engraving"),
    "drawing": ("graphite on paper", "ink on paper", "watercolour"),
    "painting": ("oil on canvas", "oil on panel", "tempera", "acrylic"),
    "photograph": ("gelatin silver print", "albumen print", "c-print"),
    "sculpture": ("bronze", "marble", "wood"),
    "textile": ("wool", "silk", "linen"),
    "ceramic": ("earthenware", "porcelain", "stoneware"),
    "manuscript": ("ink on vellum", "ink on paper"),
}


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EmbeddingLike:
    """Unit vectors from a mixture of anisotropic Gaussian clusters.

    x = mean_scale·m + c_k + noise·(g ⊙ s)·R + local·(h·B_k), then normalised, where m is one
    shared direction (real embeddings are far from centred: random pairs have cosine ~0.5),
    R a random rotation, s a decaying spectrum (s_j ∝ j^-alpha·e^(-j/tau), so most variance lies in
    a few dozen directions, as in real embeddings), c_k = (z_k ⊙ s)·R the cluster centre, and B_k
    a cluster's own `rank` principal directions (each cluster is stretched its own way).
    Cluster sizes are uneven (Dirichlet weights); a fresh sample of a cluster plays a query."""

    dim: int = DIM
    clusters: int = 300
    rank: int = 16
    mean_scale: float = 1.6
    noise: float = 0.6
    local: float = 0.3
    alpha: float = 0.4
    tau: float = 400.0
    dirichlet: float = 0.7
    seed: int = 13

    def build(self) -> _Mixture:
        rng = np.random.default_rng(self.seed)
        j = np.arange(1, self.dim + 1, dtype=np.float32)
        spectrum = j**-self.alpha * np.exp(-j / self.tau)
        spectrum /= np.linalg.norm(spectrum)
        rotation, _ = np.linalg.qr(rng.standard_normal((self.dim, self.dim)).astype(np.float32))
        mean = rng.standard_normal(self.dim).astype(np.float32)
        mean *= self.mean_scale / np.linalg.norm(mean)
        centres = mean + (rng.standard_normal((self.clusters, self.dim)).astype(np.float32) * spectrum) @ rotation
        bases = (rng.standard_normal((self.clusters, self.rank, self.dim)).astype(np.float32) * spectrum) @ rotation
        weights = rng.dirichlet(np.full(self.clusters, self.dirichlet))
        return _Mixture(self, spectrum, rotation, centres, bases, weights)


@dataclass(frozen=True)
class _Mixture:
    params: EmbeddingLike
    spectrum: np.ndarray
    rotation: np.ndarray
    centres: np.ndarray
    bases: np.ndarray
    weights: np.ndarray

    def sample(self, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        p = self.params
        out = np.empty((len(labels), p.dim), dtype=np.float32)
        for start in range(0, len(labels), 8192):
            part = labels[start : start + 8192]
            x = self.centres[part] + p.noise * (
                (rng.standard_normal((len(part), p.dim)).astype(np.float32) * self.spectrum) @ self.rotation
            )
            for k in np.unique(part):
                rows = np.flatnonzero(part == k)
                x[rows] += p.local * (rng.standard_normal((len(rows), p.rank)).astype(np.float32) @ self.bases[k])
            out[start : start + len(part)] = x / np.linalg.norm(x, axis=1, keepdims=True)
        return out


@dataclass
class Corpus:
    vectors: np.ndarray  # (n, dim) float32, unit rows
    clusters: np.ndarray
    artist: np.ndarray  # index into artist_names
    classification: np.ndarray  # index into CLASSIFICATIONS
    year: np.ndarray
    has_image: np.ndarray
    subjects: list[list[str]]
    media: list[str]
    titles: list[str]
    artist_names: list[str]
    # Per cluster, the subjects its objects are tagged with (queries are made of them).
    subject_pools: list[list[str]]

    def __len__(self) -> int:
        return len(self.vectors)

    def payload(self, i: int) -> dict[str, Any]:
        """The payload the search service stores for an object (records.object_to_payload)."""
        artist = self.artist_names[self.artist[i]]
        return {
            "title": self.titles[i],
            "artist": artist,
            "date": str(self.year[i]),
            "year": int(self.year[i]),
            "medium": self.media[i],
            "classification": CLASSIFICATIONS[self.classification[i]],
            "subjects": self.subjects[i],
            "has_image": bool(self.has_image[i]),
            "content_hash": hashlib.sha256(f"{i}:{artist}".encode()).hexdigest(),
            **({TAG_TERMS_FIELD: keywords.tag_term_ids(self.subjects[i])} if self.subjects[i] else {}),
        }


def museum_id(i: int) -> str:
    return f"bench-{i:07d}"


def index_of(museum: str) -> int:
    return int(museum.removeprefix("bench-"))


def make_corpus(n: int, mixture: _Mixture, seed: int, artists: int = 2000) -> Corpus:
    """Objects whose catalogue fields follow their content: artists are Zipf-distributed (a few
    very prolific ones), each works in a few clusters and mostly in one classification and period;
    subjects come from a pool per cluster."""
    rng = np.random.default_rng(seed)
    clusters_n = len(mixture.weights)
    zipf = 1.0 / np.arange(1, artists + 1) ** 1.05
    artist = rng.choice(artists, n, p=zipf / zipf.sum())
    homes = [rng.choice(clusters_n, rng.integers(1, 5), p=mixture.weights) for _ in range(artists)]
    own_home = rng.random(n) < 0.75
    clusters = rng.choice(clusters_n, n, p=mixture.weights)
    pick = rng.integers(0, 4, n)
    for i in np.flatnonzero(own_home):
        home = homes[artist[i]]
        clusters[i] = home[pick[i] % len(home)]
    main_class = rng.choice(len(CLASSIFICATIONS), artists, p=CLASS_WEIGHTS)
    classification = np.where(
        rng.random(n) < 0.8, main_class[artist], rng.choice(len(CLASSIFICATIONS), n, p=CLASS_WEIGHTS)
    )
    active = rng.choice(np.arange(1450, 2000), artists)
    year = np.clip(active[artist] + rng.normal(0, 12, n).astype(int), 1200, 2024)
    has_image = rng.random(n) < 0.7
    vocabulary = subject_vocabulary(800)
    pools = [rng.choice(800, 12, replace=False) for _ in range(clusters_n)]
    subjects = [
        [vocabulary[t] for t in rng.choice(pools[c], rng.integers(1, 6), replace=False)] for c in clusters.tolist()
    ]
    media = [MEDIUMS[CLASSIFICATIONS[c]][i % len(MEDIUMS[CLASSIFICATIONS[c]])] for i, c in enumerate(classification)]
    titles = [f"{s[0].title()} with figures, study no. {i}" for i, s in enumerate(subjects)]
    return Corpus(
        vectors=mixture.sample(clusters, rng),
        clusters=clusters,
        artist=artist,
        classification=classification,
        year=year,
        has_image=has_image,
        subjects=subjects,
        media=media,
        titles=titles,
        artist_names=[f"Artist {a:04d}" for a in range(artists)],
        subject_pools=[[vocabulary[t] for t in pool] for pool in pools],
    )


def subject_vocabulary(count: int) -> list[str]:
    """The `count` subject terms Tate's curators use most ("man", "tree", "sea", "woman, old"):
    real words, so that keyword and tag queries meet posting lists of realistic length. Without
    the Tate data, invented words of the same shape."""
    import gzip

    if not TATE.is_file():
        syllables = ["ba", "lo", "mi", "ten", "ru", "sa", "kor", "vi", "de", "pla", "nu", "gre"]
        return [syllables[t % 12] + syllables[t // 12 % 12] + syllables[t // 144 % 12] for t in range(count)]
    uses: Counter[str] = Counter()
    with gzip.open(TATE, "rt") as lines:
        for line in lines:
            uses.update(json.loads(line).get("subjects") or ())
    return [term for term, _ in uses.most_common(count)]


def object_sparse_vectors(corpus: Corpus, i: int) -> dict[str, Any]:
    """The sparse vectors the search service gives an object (keywords.py on its catalogue fields,
    its subjects as tags), so that keyword and tag queries match as they do on real data."""
    payload = corpus.payload(i)
    fields = [(name, str(payload[name])) for name in ("title", "artist", "date", "medium", "classification")]
    vectors = keywords.document_vectors([("id", museum_id(i)), *fields])
    tags = keywords.tag_vector(corpus.subjects[i])
    if tags is not None:
        vectors[keywords.TAGS] = tags
    return {name: vector for name, vector in vectors.items() if name in SPARSE_NAMES}


def query_texts(corpus: Corpus, clusters: np.ndarray, rng: np.random.Generator) -> list[str]:
    """A text for each query vector: two subjects of its cluster ("landscape tree"), as people
    type a subject or two."""
    return [" ".join(rng.choice(corpus.subject_pools[c], 2, replace=False)).replace(",", "") for c in clusters]


def sparse_queries(texts: Sequence[str]) -> dict[str, list[Any]]:
    """The Search RPC's sparse query vectors of each text: keywords and trigrams, and the tags
    signal's (the keyword terms again)."""
    made = [keywords.query_vectors(text) for text in texts]
    by_name = {keywords.KEYWORDS: [m.keywords for m in made], keywords.NGRAMS: [m.ngrams for m in made]}
    by_name[keywords.TAGS] = by_name[keywords.KEYWORDS]
    return {name: vectors for name, vectors in by_name.items() if name in SPARSE_NAMES}


def corpus_stats(vectors: np.ndarray, sample: int = 4000, queries: int = 200, seed: int = 0) -> dict[str, float]:
    """Neighbourhood and spectrum statistics of `sample` vectors (200 of them as queries against
    the rest), comparable with REAL_REFERENCE."""
    rng = np.random.default_rng(seed)
    chosen = vectors[rng.choice(len(vectors), min(sample, len(vectors)), replace=False)]
    q, rest = chosen[:queries], chosen[queries:]
    ranked = -np.sort(-(q @ rest.T), axis=1)
    centred = rest - rest.mean(axis=0)
    variance = np.linalg.svd(centred, compute_uv=False) ** 2
    variance /= variance.sum()
    # Local intrinsic dimension (Levina-Bickel MLE over the 20 nearest neighbours); infinite where
    # they are all duplicates, which the median ignores.
    distance = np.sqrt(np.maximum(2 - 2 * ranked[:, :20], 1e-12))
    with np.errstate(divide="ignore"):
        lid = -1 / np.mean(np.log(distance[:, :-1] / distance[:, -1:]), axis=1)
    return {
        "nn1_cosine": round(float(ranked[:, 0].mean()), 3),
        "nn12_cosine": round(float(ranked[:, 11].mean()), 3),
        "median_cosine": round(float(np.median(ranked)), 3),
        "mean_vector_norm": round(float(np.linalg.norm(rest.mean(axis=0))), 3),
        "pca_variance_top10": round(float(variance[:10].sum()), 3),
        "pca_variance_top50": round(float(variance[:50].sum()), 3),
        "pca_variance_top200": round(float(variance[:200].sum()), 3),
        "participation_ratio": round(float(1 / (variance**2).sum()), 1),
        "local_intrinsic_dim": round(float(np.median(lid)), 1),
    }


def real_embeddings(count: int = 4000, seed: int = 0) -> np.ndarray:
    """MPNet embeddings of the metadata text (title, artist, date, medium, classification,
    movements, as records.object_text) of `count` random Tate objects: the calibration reference.
    Needs the embedder's models; minutes of CPU."""
    import gzip
    import random

    from vitrine.embedder.models.base import choose_placement
    from vitrine.embedder.models.sentence_text import mpnet

    with gzip.open(TATE, "rt") as lines:
        rows = [json.loads(line) for line in lines]
    rows = random.Random(seed).sample(rows, count)

    def text(row: dict[str, Any]) -> str:
        movements = f"Movements: {', '.join(row['movements'])}" if row.get("movements") else ""
        artist = f"by {row['artist']}" if row.get("artist") else ""
        parts = [row.get("title"), artist, row.get("date"), row.get("medium"), row.get("classification"), movements]
        return ". ".join(p.strip().rstrip(".") for p in parts if p and p.strip())

    model_dir = Path(os.environ.get("VITRINE_EMBEDDER_MODEL_DIR", Path.home() / ".cache/vitrine/models"))
    model = mpnet(model_dir, choose_placement())
    model.load()
    texts = [text(r) for r in rows]
    return np.concatenate([model.embed_texts(texts[i : i + 32]) for i in range(0, count, 32)])


# ----------------------------------------------------------------------------------------------
# Queries and exact answers
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Filter:
    name: str
    conditions: Conditions
    mask: np.ndarray  # which objects match

    @property
    def selectivity(self) -> float:
        return float(self.mask.mean())


def choose_filters(corpus: Corpus) -> list[Filter]:
    """One artist with about 2% of the objects (a 'works by' filter), and the set of
    classifications closest to 20% (any of them): chosen on the data, selectivity measured."""
    n = len(corpus)
    artist_share = np.bincount(corpus.artist, minlength=len(corpus.artist_names)) / n
    artist = int(np.argmin(np.abs(artist_share - 0.02)))
    class_share = np.bincount(corpus.classification, minlength=len(CLASSIFICATIONS)) / n
    subsets = (s for r in (1, 2, 3) for s in itertools.combinations(range(len(CLASSIFICATIONS)), r))
    classes = min(subsets, key=lambda s: abs(class_share[list(s)].sum() - 0.2))
    return [
        Filter(
            "filter ~2% (artist)",
            Conditions(artists=(corpus.artist_names[artist],)),
            corpus.artist == artist,
        ),
        Filter(
            "filter ~20% (classification)",
            Conditions(classifications=tuple(CLASSIFICATIONS[c] for c in classes)),
            np.isin(corpus.classification, classes),
        ),
    ]


@dataclass(frozen=True)
class Recommendation:
    positives: np.ndarray  # object indices
    negatives: np.ndarray


def make_recommendations(corpus: Corpus, count: int, seed: int) -> list[Recommendation]:
    """A visitor liked 3 objects of one cluster and disliked 1 of another."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        anchor = int(rng.integers(len(corpus)))
        same = np.flatnonzero(corpus.clusters == corpus.clusters[anchor])
        liked = rng.choice(same, min(3, len(same)), replace=False)
        disliked = rng.choice(np.flatnonzero(corpus.clusters != corpus.clusters[anchor]), 1)
        out.append(Recommendation(liked, disliked))
    return out


def top_k(scores: np.ndarray, k: int = K) -> np.ndarray:
    """Indices of the k highest scores, best first (what a brute-force search does)."""
    part = np.argpartition(-scores, k)[:k]
    return part[np.argsort(-scores[part])]


def exact_answers(vectors: np.ndarray, queries: np.ndarray, mask: np.ndarray | None = None) -> list[set[int]]:
    scores = queries @ vectors.T
    if mask is not None:
        scores[:, ~mask] = -np.inf
    return [set(top_k(row).tolist()) for row in scores]


def exact_recommend(vectors: np.ndarray, rec: Recommendation) -> set[int]:
    """Qdrant's best-score rule: a candidate closer to its best positive than to any negative
    ranks by that positive similarity, ahead of all others (which rank by -best negative);
    the example objects themselves are excluded."""
    best_positive = (vectors @ vectors[rec.positives].T).max(axis=1)
    best_negative = (vectors @ vectors[rec.negatives].T).max(axis=1)
    scores = np.where(best_positive > best_negative, 2 + best_positive, -2 - best_negative)
    scores[np.concatenate([rec.positives, rec.negatives])] = -np.inf
    return set(top_k(scores).tolist())


# ----------------------------------------------------------------------------------------------
# Measuring
# ----------------------------------------------------------------------------------------------


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def rss_mb() -> float:
    return _status_mb("VmRSS")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def disk_mb(path: Path) -> float:
    """Bytes allocated on disk under `path` (as du counts them)."""
    return sum(f.stat().st_blocks * 512 for f in path.rglob("*") if f.is_file()) / 2**20


def summary(latencies: Sequence[float], recall: float | None = None) -> dict[str, float | None]:
    values = np.asarray(latencies)
    return {
        "p50_ms": round(float(np.percentile(values, 50)), 3),
        "p99_ms": round(float(np.percentile(values, 99)), 3),
        "mean_ms": round(float(values.mean()), 3),
        "recall_at_12": None if recall is None else round(recall, 4),
    }


def recall(found: Sequence[set[int]], exact: Sequence[set[int]]) -> float:
    """Mean share of the exact answers found, over the first len(found) queries."""
    return float(np.mean([len(f & e) / len(e) for f, e in zip(found, exact[: len(found)], strict=True) if e]))


@dataclass(frozen=True)
class Method:
    """One way of answering query number i: the object indices it finds."""

    name: str
    run: Callable[[int], set[int]]
    exact: list[set[int]] | None  # None: recall not measured
    prepare: Callable[[], object] | None = None  # untimed, before each call (thread settings)


def measure(methods: Sequence[Method], count: int) -> dict[str, dict[str, Any]]:
    """Every method answers query 0, then every method query 1, and so on (each query starting
    with the next method), after a warm-up: load from other work on the machine, which comes and
    goes, falls on all methods alike, so their ratios hold even when the absolute times move."""
    for i in range(min(WARMUP, count)):
        for method in methods:
            if method.prepare:
                method.prepare()
            method.run(i)
    latencies: dict[str, list[float]] = {m.name: [] for m in methods}
    found: dict[str, list[set[int]]] = {m.name: [] for m in methods}
    for i in range(count):
        for j in range(len(methods)):
            method = methods[(i + j) % len(methods)]
            if method.prepare:
                method.prepare()
            start = time.perf_counter()
            answer = method.run(i)
            latencies[method.name].append((time.perf_counter() - start) * 1e3)
            found[method.name].append(answer)
    return {
        m.name: summary(latencies[m.name], None if m.exact is None else recall(found[m.name], m.exact)) for m in methods
    }


def brute_force_methods(
    vectors: np.ndarray, queries: np.ndarray, exact: list[set[int]]
) -> tuple[list[Method], list[Method]]:
    """numpy (matrix @ q, argpartition) and FAISS IndexFlatIP, one query at a time: with all cores,
    and with one thread (as the store answers a query). On a busy machine a multi-threaded call
    also waits for its other threads to be scheduled, and their threads spin for a while after
    it, slowing whatever runs next: the multi-threaded ones are measured apart."""
    import faiss
    from threadpoolctl import ThreadpoolController

    blas = ThreadpoolController()
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    parallel: list[Method] = []
    single: list[Method] = []
    for threads in dict.fromkeys((os.cpu_count() or 1, 1)):
        label = f"{threads} thread{'s' if threads > 1 else ''}"
        (single if threads == 1 else parallel).extend(
            [
                Method(
                    f"numpy brute force ({label})",
                    lambda i: set(top_k(vectors @ queries[i]).tolist()),
                    exact,
                    prepare=lambda t=threads: blas.limit(limits=t, user_api="blas"),
                ),
                Method(
                    f"FAISS flat ({label})",
                    lambda i: set(index.search(queries[i : i + 1], K)[1][0].tolist()),
                    exact,
                    prepare=lambda t=threads: faiss.omp_set_num_threads(t),
                ),
            ]
        )
    return parallel, single


def store_methods(
    store: EmbeddedStore,
    corpus: Corpus,
    queries: np.ndarray,
    filters: list[Filter],
    recommendations: list[Recommendation],
    exact: dict[str, list[set[int]]],
    sparse: dict[str, list[Any]],
    candidates: int,
) -> list[Method]:
    """Plain, filtered and recommend queries through the store's public API, with payload; then
    what one Search does with the store: each signal asks for `candidates` point keys (dense,
    and keywords, trigrams and tags when the store has sparse vectors). Recall is on the top 12."""
    by_key = {point_key(museum_id(i)): i for i in range(len(corpus))}

    def ids(found: list[Any]) -> set[int]:
        return {index_of(hit.id) for hit in found[:K]}

    def keys(found: list[Any]) -> set[int]:
        return {by_key[hit.id] for hit in found[:K]}

    def recommend(i: int) -> set[int]:
        rec = recommendations[i]
        examples = [museum_id(int(j)) for j in (*rec.positives, *rec.negatives)]
        vectors = corpus.vectors
        return ids(
            store.recommend("text", vectors[rec.positives], vectors[rec.negatives], limit=K, exclude_ids=examples)
        )

    methods = [Method("store: plain", lambda i: ids(store.query("text", queries[i], limit=K)), exact["plain"])]
    for f in filters:
        methods.append(
            Method(
                f"store: {f.name}",
                lambda i, c=f.conditions: ids(store.query("text", queries[i], limit=K, conditions=c)),
                exact[f.name],
            )
        )
    methods.append(Method("store: recommend 3+/1-", recommend, exact["recommend"]))
    methods.append(
        Method(
            f"store: plain, limit {candidates} (Search's candidates: keys only, int8)",
            lambda i: keys(store.query("text", queries[i], limit=candidates, keys_only=True, approximate=True)),
            exact["plain"],
        )
    )
    for name, vectors in sparse.items():
        methods.append(
            Method(
                f"store: sparse {name}, limit {candidates}, keys only",
                lambda i, n=name, v=vectors: keys(store.sparse_query(n, v[i], limit=candidates, keys_only=True)),
                None,
            )
        )
    return methods


def query_phase(brute: tuple[list[Method], list[Method]], store: list[Method], count: int) -> dict[str, Any]:
    """A first pass of plain store queries right after the collection is opened or rebuilt (its
    files are paged in then), reported on its own, and an unreported first pass of every other
    kind of store query (each kind touches other parts of the files: the first touch of a page
    costs a fault, and a first pass of plain queries alone would give them a warm start the
    others lack); then the multi-threaded brute force; then the single-threaded brute force;
    then the store's queries, interleaved among themselves (a brute-force scan of the whole
    matrix between two store queries would evict the store's data from the CPU caches)."""
    parallel, single = brute
    plain = store[0]
    first: list[float] = []
    found = []
    for i in range(count):
        start = time.perf_counter()
        found.append(plain.run(i))
        first.append((time.perf_counter() - start) * 1e3)
    for method in store[1:]:
        for i in range(count):
            method.run(i)
    rows = measure(parallel, count) if parallel else {}
    time.sleep(0.5)  # let their idle threads stop spinning
    rows.update(measure(single, count))
    rows.update(measure(store, count))
    rows["store: plain, first pass after open"] = summary(first, recall(found, plain.exact))
    reference = min(row["p50_ms"] for name, row in rows.items() if name.startswith("numpy"))
    for name, row in rows.items():
        row["ratio_to_numpy_p50"] = round(row["p50_ms"] / reference, 3)
        if name.startswith("store"):
            row["ratio_to_plain_p50"] = round(row["p50_ms"] / rows[plain.name]["p50_ms"], 3)
    return {"rows": rows, "numpy_reference_p50_ms": reference}


def ingest(store: EmbeddedStore, corpus: Corpus, batch: int) -> dict[str, Any]:
    """Upsert every object in batches, each preceded by the content-hash lookup UpsertObjects
    does; the points (vectors, payload, sparse vectors) are built outside the timing."""
    lookup_s = upsert_s = 0.0
    per_batch = []
    for start in range(0, len(corpus), batch):
        rows = range(start, min(start + batch, len(corpus)))
        points = [
            StoredPoint(museum_id(i), {"text": corpus.vectors[i], **object_sparse_vectors(corpus, i)}, payload)
            for i in rows
            for payload in [corpus.payload(i)]
        ]
        t0 = time.perf_counter()
        store.get([p.id for p in points], payload_fields=["content_hash"])
        t1 = time.perf_counter()
        store.upsert(points)
        t2 = time.perf_counter()
        lookup_s += t1 - t0
        upsert_s += t2 - t1
        per_batch.append((t2 - t1) * 1e3)
    n = len(corpus)
    return {
        "batch": batch,
        "sparse_vectors": list(SPARSE_NAMES),
        "upsert_objects_per_s": round(n / upsert_s, 1),
        "with_hash_lookup_objects_per_s": round(n / (upsert_s + lookup_s), 1),
        "upsert_batch_p50_ms": round(float(np.percentile(per_batch, 50)), 2),
        "upsert_batch_p99_ms": round(float(np.percentile(per_batch, 99)), 2),
        "seconds": round(upsert_s + lookup_s, 2),
    }


def shard_info(store: EmbeddedStore) -> dict[str, int]:
    """Segments and HNSW-indexed vectors (dense and sparse), from the engine (diagnostic only)."""
    info = store._shard.info()
    return {"segments": info.segments_count, "points": info.points_count, "indexed_vectors": info.indexed_vectors_count}


def serving_probe(folder: Path, queries_file: Path) -> dict[str, float]:
    """In a fresh process: open the stored collection and serve the queries, with RSS at each
    step (what a search service holding this collection pays)."""
    code = (
        "import json,sys;from bench.search import probe;"
        f"print(json.dumps(probe({str(folder)!r},{str(queries_file)!r})))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def probe(folder: str, queries_file: str) -> dict[str, float]:
    queries = np.load(queries_file)
    before = rss_mb()
    start = time.perf_counter()
    store = EmbeddedStore(folder, COLLECTION)
    store.ensure_collection({"text": queries.shape[1]})
    open_s = time.perf_counter() - start
    opened = rss_mb()
    passes = []
    for _ in range(2):
        latencies = []
        for q in queries:
            start = time.perf_counter()
            store.query("text", q, limit=K)
            latencies.append((time.perf_counter() - start) * 1e3)
        passes.append(float(np.percentile(latencies, 50)))
    served = rss_mb()
    store.close()
    return {
        "open_s": round(open_s, 2),
        "rss_before_open_mb": round(before, 1),
        "rss_added_by_open_mb": round(opened - before, 1),
        "rss_added_after_queries_mb": round(served - before, 1),
        # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forking parent.
        "peak_rss_mb": round(_status_mb("VmHWM"), 1),
        "query_p50_ms_first_pass": round(passes[0], 3),
        "query_p50_ms_second_pass": round(passes[1], 3),
    }


# ----------------------------------------------------------------------------------------------
# One size
# ----------------------------------------------------------------------------------------------


def prefix(full: Corpus, n: int) -> Corpus:
    """The first n objects (every size shares the same vectors)."""
    return Corpus(
        vectors=full.vectors[:n],
        clusters=full.clusters[:n],
        artist=full.artist[:n],
        classification=full.classification[:n],
        year=full.year[:n],
        has_image=full.has_image[:n],
        subjects=full.subjects[:n],
        media=full.media[:n],
        titles=full.titles[:n],
        artist_names=full.artist_names,
        subject_pools=full.subject_pools,
    )


def bench_size(
    full: Corpus,
    n: int,
    queries: np.ndarray,
    texts: list[str],
    work: Path,
    batch: int,
    optimize: bool,
    candidates: int,
    seed: int,
    rpc: bool = True,
) -> dict[str, Any]:
    corpus = prefix(full, n)
    count = len(queries)
    sparse = sparse_queries(texts)
    filters = choose_filters(corpus)
    recommendations = make_recommendations(corpus, count, seed + n)
    exact = {"plain": exact_answers(corpus.vectors, queries)}
    for f in filters:
        exact[f.name] = exact_answers(corpus.vectors, queries, f.mask)
    exact["recommend"] = [exact_recommend(corpus.vectors, r) for r in recommendations]
    result: dict[str, Any] = {
        "objects": n,
        "filters": {
            f.name: {"conditions": asdict(f.conditions), "selectivity": round(f.selectivity, 4)} for f in filters
        },
        "phases": {},
    }
    brute = brute_force_methods(corpus.vectors, queries, exact["plain"])

    folder = work / f"store-{n}"
    store = EmbeddedStore(folder, COLLECTION)
    store.ensure_collection({"text": DIM})
    rss_before = rss_mb()
    print(f"[{n}] ingest", flush=True)
    result["ingest"] = ingest(store, corpus, batch)
    result["ingest"]["rss_added_mb"] = round(rss_mb() - rss_before, 1)
    print(f"[{n}] queries, the store without HNSW index (it scans)", flush=True)
    methods = store_methods(store, corpus, queries, filters, recommendations, exact, sparse, candidates)
    scan_count = min(count, SCAN_QUERIES)
    result["phases"]["scan"] = {
        **query_phase(brute, methods, scan_count),
        "queries": scan_count,
        "shard": shard_info(store),
    }
    store.close()
    result["disk_mb_before_optimize"] = round(disk_mb(folder), 1)
    if optimize:
        print(f"[{n}] HNSW build as the service runs it (copy, child process, swap), queries meanwhile", flush=True)
        result["index_build"] = asyncio.run(build_while_serving(folder, queries))
        result["optimize_s"] = result["index_build"]["seconds"]
        store = EmbeddedStore(folder, COLLECTION)
        store.ensure_collection({"text": DIM})
        print(f"[{n}] queries, the store with HNSW", flush=True)
        methods = store_methods(store, corpus, queries, filters, recommendations, exact, sparse, candidates)
        result["phases"]["HNSW"] = {**query_phase(brute, methods, count), "queries": count, "shard": shard_info(store)}
        store.close()
        result["disk_mb_after_optimize"] = round(disk_mb(folder), 1)
    del brute, methods
    if optimize and rpc:
        print(f"[{n}] Search RPC end to end (query embedding excluded)", flush=True)
        result["search_rpc"] = rpc_probe(folder, COLLECTION, queries, texts)
    queries_file = work / "queries.npy"
    np.save(queries_file, queries)
    print(f"[{n}] serving probe (fresh process)", flush=True)
    result["serving_process"] = serving_probe(work / f"store-{n}", queries_file)
    result["bench_peak_rss_mb_so_far"] = round(peak_rss_mb(), 1)
    shutil.rmtree(folder, ignore_errors=True)
    return result


# ----------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------


async def build_while_serving(folder: Path, queries: np.ndarray) -> dict[str, Any]:
    """The HNSW build the search service runs (indexing.IndexBuilder: copy the collection, optimize
    the copy in a child process, swap it in), timed, with plain queries answered meanwhile."""
    store = AsyncStore(EmbeddedStore(folder, COLLECTION))
    await store.ensure_collection({"text": DIM})
    builder = IndexBuilder(store, min_new_objects=1, idle_s=0.0)
    start = time.perf_counter()
    task = asyncio.create_task(builder.build())
    latencies = []
    while not task.done():
        clock = time.perf_counter()
        await store.query("text", queries[len(latencies) % len(queries)], limit=K)
        latencies.append((time.perf_counter() - clock) * 1e3)
        await asyncio.sleep(0.05)
    built = await task
    seconds = time.perf_counter() - start
    info = await store.holding_embedded(shard_info)
    await store.close()
    return {
        "built": built,
        "seconds": round(seconds, 1),
        "queries_answered_meanwhile": len(latencies),
        "query_p50_ms_meanwhile": round(float(np.percentile(latencies, 50)), 2) if latencies else None,
        "query_max_ms_meanwhile": round(float(np.max(latencies)), 1) if latencies else None,
        "shard_after": info,
    }


def final_phase(result: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    name = "HNSW" if "HNSW" in result["phases"] else "scan"
    return name, result["phases"][name]["rows"]


def check_bar(result: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    """The issue's bar, on the largest size measured."""
    label, rows = final_phase(result)
    plain = rows["store: plain"]
    checks: list[tuple[str, str, bool | None]] = [
        (
            f"query p50 ≤ 0.3× numpy (the faster), recall@12 ≥ 0.95 ({label})",
            f"{plain['ratio_to_numpy_p50']:.2f}×, recall {plain['recall_at_12']:.3f}",
            plain["ratio_to_numpy_p50"] <= 0.3 and plain["recall_at_12"] >= 0.95,
        )
    ]
    for name, row in rows.items():
        if name.startswith("store") and not any(word in name for word in ("plain", "sparse", "limit")):
            checks.append(
                (
                    f"{name.removeprefix('store: ')} within 1.5× plain ({label})",
                    f"{row['ratio_to_plain_p50']:.2f}×, recall {row['recall_at_12']:.3f}",
                    row["ratio_to_plain_p50"] <= 1.5,
                )
            )
    rpc = result.get("search_rpc")
    if rpc:
        fused = rpc["fused (default weights)"]
        checks.append(
            (
                "Search RPC p50 < 10 ms end to end (query embedding excluded)",
                f"{fused['p50_ms']:.2f} ms (p99 {fused['p99_ms']:.2f})",
                fused["p50_ms"] < 10,
            )
        )
    build = result.get("index_build")
    if build:
        checks.append(
            (
                "HNSW built in a child process while serving, swapped in",
                f"{build['seconds']:.0f} s; {build['queries_answered_meanwhile']} queries answered meanwhile, "
                f"p50 {build['query_p50_ms_meanwhile']} ms, slowest {build['query_max_ms_meanwhile']} ms",
                bool(build["built"]),
            )
        )
    rate = result["ingest"]["with_hash_lookup_objects_per_s"]
    checks.append(("≥ 1,000 upserts/s excluding model time (store level)", f"{rate:,.0f}/s", rate >= 1000))
    return checks


def scaling_text(result: dict[str, Any]) -> list[str]:
    n = result["objects"]
    per_100k_rss_mb = result["serving_process"]["rss_added_after_queries_mb"] * 100_000 / n
    disk_key = "disk_mb_after_optimize" if "disk_mb_after_optimize" in result else "disk_mb_before_optimize"
    per_100k_disk_mb = result[disk_key] * 100_000 / n
    vectors_1m_gb = 1_000_000 * DIM * 4 / 1e9
    rss_1m_gb = per_100k_rss_mb * 10 / 1e3
    rest_1m_gb = max(rss_1m_gb - vectors_1m_gb, 0.0)
    images_1m_gb = 700_000 * 1360 * 4 / 1e9
    phase, _ = final_phase(result)
    numpy_1m_ms = result["phases"][phase]["numpy_reference_p50_ms"] * 1_000_000 / n
    optimize_s = result.get("optimize_s")
    build = (
        f"The HNSW build took {optimize_s:.0f} s at {n:,} here; it grows as n·log n, so roughly "
        f"{optimize_s * (1e6 / n) * np.log(1e6) / np.log(n) / 60:.0f} min at 1M on this machine, in one blocking "
        "call: build in a child process on a new folder, warm it up (see 'first pass after open') and swap, "
        "never in the serving process."
        if optimize_s
        else ""
    )
    return [
        "## Scaling to 1M objects and to a GPU node (on paper)",
        "",
        f"Measured here: a serving process holding {n:,} objects adds {per_100k_rss_mb:,.0f} MB RSS per 100k "
        f"objects, and the collection takes {per_100k_disk_mb:,.0f} MB on disk per 100k (vectors, payload, "
        "sparse vectors, payload indexes, HNSW, write-ahead log).",
        "",
        f"At 1M × {DIM}-d: memory ≈ n·d·4 bytes of float32 vectors ({vectors_1m_gb:.1f} GB) + HNSW links "
        "(m=16: up to 32 neighbours on level 0, 4 bytes each, ~0.15 GB) + payload, sparse vectors and indexes; "
        f"scaling the measurement above by 10 gives about {rss_1m_gb:.1f} GB, of which {rest_1m_gb:.1f} GB "
        f"is not the dense vectors. Image vectors (1360-d for 70% of objects) would add {images_1m_gb:.1f} GB "
        "and a second HNSW build. The store keeps an int8 copy of the dense vectors in RAM (1 byte a "
        f"dimension: {vectors_1m_gb / 4:.2f} GB more at 1M), which a Search's candidate queries read; at 1M "
        "the float32 originals can move to disk (`on_disk` vectors, paged in for the exact queries and for "
        "rescoring), leaving the int8 copy as the RAM that grows with the collection (binary quantization: "
        "÷32, with more rescoring). "
        f"Brute force grows linearly (numpy: about {numpy_1m_ms:,.0f} ms a query at 1M here), HNSW search "
        "roughly logarithmically (a query visits a few thousand vectors, not all of them). " + build,
        "",
        "Beyond one process: a Qdrant server (ServerStore, same contract) shards the collection across "
        "nodes (each shard searches its part in parallel, the answers are merged), replicates shards for "
        "throughput and availability, and builds HNSW in background threads while it serves, which the "
        "embedded engine cannot. On a GPU node brute force is cheap again (FAISS GPU flat over 1M × 768, "
        "3 GB of GPU memory, reads it all in about a millisecond for a whole batch of queries), and the Qdrant "
        "server's GPU indexing builds HNSW several times faster; there the query embedding, not the vector "
        "search, dominates a Search.",
    ]


def phase_table(rows: dict[str, Any]) -> list[str]:
    lines = [
        "| method | p50 ms | p99 ms | recall@12 | p50 / numpy (faster) | p50 / store plain |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in rows.items():
        to_plain = f"{r['ratio_to_plain_p50']:.2f}×" if "ratio_to_plain_p50" in r else ""
        lines.append(
            f"| {name} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} "
            f"| {'—' if r['recall_at_12'] is None else format(r['recall_at_12'], '.3f')} "
            f"| {r['ratio_to_numpy_p50']:.2f}× | {to_plain} |"
        )
    return lines


def write_report(results: dict[str, Any]) -> list[str]:
    machine = results["machine"]
    lines = [
        "# Search benchmark (vector store vs brute force, same vectors, one run)",
        "",
        f"Machine: {machine['cpu_count']} cores, {machine['platform']}; load average (1, 5, 15 min) "
        f"{machine['load_average_at_start']} at the start, {machine['load_average_at_end']} at the end "
        "(the machine is shared: other work running at the same time slows every method, which is why the "
        "methods of a group are measured interleaved, query by query). "
        f"Versions: {', '.join(f'{k} {v}' for k, v in results['versions'].items())}. "
        f"Whole run: {results['seconds']:.0f} s. Run: `.venv/bin/python -m bench.search`.",
        "",
        "Vectors: `EmbeddingLike` (bench/search.py), a mixture of "
        f"{results['generator']['params']['clusters']} anisotropic clusters around a shared mean direction "
        "with a decaying spectrum (never uniform random); its statistics against real embeddings:",
        "",
        "| statistic (4,000-vector sample) | generated | real (" + REAL_REFERENCE["source"] + ") |",
        "| --- | --- | --- |",
    ]
    for key, value in results["generator"]["stats"].items():
        lines.append(f"| {key} | {value} | {REAL_REFERENCE.get(key)} |")
    for result in results["sizes"].values():
        n = result["objects"]
        lines += [
            "",
            f"## {n:,} objects × {DIM}-d, k={K}",
            "",
            "Filters: "
            + "; ".join(f"{name}: {f['selectivity']:.1%} of objects" for name, f in result["filters"].items())
            + ". Recommend: 3 liked objects of one cluster, 1 disliked of another, the 4 excluded.",
        ]
        titles = {"scan": "Before optimize(): the store scans", "HNSW": "After optimize(): HNSW index"}
        for phase, data in result["phases"].items():
            lines += ["", f"### {titles[phase]} ({data['queries']} queries)", "", *phase_table(data["rows"])]
        ing = result["ingest"]
        probe_result = result["serving_process"]
        lines += [
            "",
            f"- Ingest (store level, batches of {ing['batch']}, dense + payload"
            + (f" + sparse {', '.join(ing['sparse_vectors'])}" if ing["sparse_vectors"] else "")
            + f"): {ing['upsert_objects_per_s']:,.0f} objects/s upsert alone, "
            f"{ing['with_hash_lookup_objects_per_s']:,.0f}/s with the content-hash lookup UpsertObjects does "
            f"first; a batch p50 {ing['upsert_batch_p50_ms']:.1f} ms, p99 {ing['upsert_batch_p99_ms']:.1f} ms.",
        ]
        if "index_build" in result:
            build = result["index_build"]
            lines.append(
                "- HNSW build of the dense and sparse vectors as the search service runs it (indexing.py: copy the "
                f"collection, optimize() the copy in a child process, swap it in): {build['seconds']:.1f} s; "
                f"{build['queries_answered_meanwhile']} plain queries answered meanwhile (p50 "
                f"{build['query_p50_ms_meanwhile']} ms, slowest {build['query_max_ms_meanwhile']} ms: the copy "
                f"holds the store's thread); after it {build['shard_after']}."
            )
        if "search_rpc" in result:
            rpc = result["search_rpc"]
            parts = [
                f"{name} p50 {row['p50_ms']:.2f} ms, p99 {row['p99_ms']:.2f} ms"
                for name, row in rpc.items()
                if isinstance(row, dict)
            ]
            lines.append(
                f"- Search RPC end to end (a real search service on this collection, {rpc['queries']} queries of two "
                "subject words, one at a time, page of 12; query vectors from a table embedder, so no model time): "
                + "; ".join(parts)
                + "."
            )
        lines += [
            f"- Disk: {result['disk_mb_before_optimize']:.0f} MB before optimize"
            + (f", {result['disk_mb_after_optimize']:.0f} MB after" if "disk_mb_after_optimize" in result else "")
            + ".",
            f"- Serving process (fresh: opens the collection, serves the plain queries twice): open "
            f"{probe_result['open_s']} s, RSS +{probe_result['rss_added_by_open_mb']:.0f} MB after open, "
            f"+{probe_result['rss_added_after_queries_mb']:.0f} MB after the queries "
            f"(peak {probe_result['peak_rss_mb']:.0f} MB with Python and numpy); plain query p50 "
            f"{probe_result['query_p50_ms_first_pass']:.2f} ms over the first pass, "
            f"{probe_result['query_p50_ms_second_pass']:.2f} ms over the second.",
            f"- Benchmark process peak RSS so far: {result['bench_peak_rss_mb_so_far']:,.0f} MB (it holds the "
            "vectors, a FAISS copy, the exact answers and the store).",
        ]
    largest = results["sizes"][max(results["sizes"], key=int)]
    lines += ["", f"## The bar of issue #13 at {largest['objects']:,} objects", "", "| criterion | measured | met |"]
    lines.append("| --- | --- | --- |")
    for criterion, measured, met in check_bar(largest):
        lines.append(f"| {criterion} | {measured} | {'—' if met is None else ('yes' if met else 'NO')} |")
    lines += [
        "",
        "## Notes",
        "",
        "- Latencies are single queries, one after another, in this process, with payload returned (as "
        "Recommend and MoreLikeThis ask), except the 'keys only' rows: a Search's candidate lists carry "
        "point keys alone and only the page's payload is read; the Search candidates row also reads the "
        "int8 copy of the vectors (`approximate`), as a Search does. The store's queries are interleaved "
        "among themselves (every one answers query i before any answers query i+1), so their ratios to the "
        "plain query compare them under the same load; the single-threaded brute force runs just before, "
        "interleaved the same way (not between store queries: its scan of the whole matrix would evict the "
        "store's data from the CPU caches), and the multi-threaded brute force before that, on its own (its "
        "idle threads spin for a while and would slow whatever runs next). The store answers a query on one "
        "thread. The reference for the ratios is the faster numpy of the same phase.",
        "- Recall is against the exact answer on the same vectors: exact filtered top-12 for filtered queries, "
        "exact best-score for recommend (the example objects excluded, as the Recommend RPC does).",
        "- 'first pass after open' is the plain queries right after the collection was opened or rebuilt: "
        "the engine pages its files in then; the other rows come after it.",
        "- The Search RPC end to end runs the real search service (bench/search_rpc.py) with a table embedder "
        "that answers each query text with its precomputed vector, so model time is excluded (the embedder "
        "benchmark measures it). A Search checks the query's spelling (a 1-hit keys-only sparse query per "
        "word), embeds the query meanwhile, asks the keyword, trigram and tags signals for `candidates` keys "
        "in one hop to the store's thread (the tags signal's coverage rule is a filter on the objects' tag "
        "term ids inside that query), then the dense text signal, fuses, and reads the page's payload.",
        "- Ingest through the UpsertObjects RPC adds, beyond the store work measured here, the embedder calls "
        "(model time, excluded by the bar), the keyword vectors computed in Python, and the gRPC transfer. "
        "The sparse vectors stored here are synthetic, sized as keywords.py's on Tate texts.",
        "",
        *scaling_text(largest),
    ]
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000", help="object counts, comma-separated")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--batch", type=int, default=64, help="objects per upsert (the CLI's default batch)")
    parser.add_argument("--no-optimize", action="store_true", help="skip the HNSW build (scan only)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 10k objects, 100 queries")
    parser.add_argument("--work-dir", default=None, help="where the stores go (default: a temporary folder)")
    parser.add_argument(
        "--candidates", type=int, default=100, help="hits each signal of a Search asks for (settings.candidates)"
    )
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument(
        "--calibrate", action="store_true", help="print the statistics of real MPNet embeddings (REAL_REFERENCE)"
    )
    args = parser.parse_args(argv)
    if args.calibrate:
        print(json.dumps(corpus_stats(real_embeddings()), indent=1))
        return
    sizes = [10_000] if args.quick else sorted(int(s) for s in args.sizes.split(","))
    n_queries = 100 if args.quick else args.queries

    import faiss

    start = time.perf_counter()
    generator = EmbeddingLike(seed=args.seed)
    mixture = generator.build()
    full = make_corpus(max(sizes), mixture, args.seed)
    query_rng = np.random.default_rng(args.seed + 1)
    query_clusters = query_rng.choice(len(mixture.weights), n_queries, p=mixture.weights)
    queries = mixture.sample(query_clusters, query_rng)
    texts = query_texts(full, query_clusters, np.random.default_rng(args.seed + 2))
    print(f"generated {max(sizes):,} vectors in {time.perf_counter() - start:.1f} s", flush=True)
    stats = corpus_stats(full.vectors)
    print("generated vs real:", json.dumps({k: (v, REAL_REFERENCE.get(k)) for k, v in stats.items()}), flush=True)

    results: dict[str, Any] = {
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        },
        "versions": {
            "numpy": np.__version__,
            "faiss-cpu": faiss.__version__,
            "qdrant-edge-py": metadata.version("qdrant-edge-py"),
        },
        "generator": {"params": asdict(generator), "stats": stats, "real_reference": REAL_REFERENCE},
        "queries": n_queries,
        "k": K,
        "sizes": {},
    }
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="vitrine-bench-search-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        for n in sizes:
            result = bench_size(
                full, n, queries, texts, work, args.batch, not args.no_optimize, args.candidates, args.seed
            )
            results["sizes"][str(n)] = result
            print(json.dumps(result, indent=1), flush=True)
    finally:
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    results["seconds"] = round(time.perf_counter() - start, 1)
    results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "search.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = write_report(results)
    (RESULTS / "search.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
