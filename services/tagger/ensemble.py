"""Step 2: the learned combiner over the base models' outputs.

Every tag that some base model ranks in its top list becomes a candidate for the object; each
candidate is described by every base model's score and rank, the tag's training frequency and
place in the hierarchy, whether the object's words contain the tag's words, and the object's
field coverage. A gradient-boosted classifier (LightGBM, binary log-loss) trained on documents
the base models never saw turns that into a calibrated probability that a curator would give
the tag. Its per-feature contributions (SHAP values) become the explanation's per-model shares.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import lightgbm
import numpy as np
import scipy.sparse as sp

from vitrine.common.vocabulary import Vocabulary
from vitrine.tagger.text_features import words
from vitrine.v1 import common_pb2

LEXICAL_FIELDS = ("title", "medium", "classification", "description")
OBJECT_FIELDS = ("title", "artist", "date", "medium", "classification", "description")


@dataclass
class Candidates:
    """(document row, tag column) pairs and their feature rows."""

    docs: np.ndarray
    tags: np.ndarray
    features: np.ndarray
    # Base model name -> that model's (score, rank) for each pair (rank 0 = not ranked).
    scores: dict[str, np.ndarray]
    ranks: dict[str, np.ndarray]

    def select(self, positions: np.ndarray) -> Candidates:
        """The candidates at these positions."""
        return Candidates(
            self.docs[positions],
            self.tags[positions],
            self.features[positions],
            {b: s[positions] for b, s in self.scores.items()},
            {b: r[positions] for b, r in self.ranks.items()},
        )


def rank_matrix(scores: sp.csr_matrix) -> sp.csr_matrix:
    """Same sparsity as `scores`; values = 1-based rank of the entry within its row."""
    scores = scores.tocsr()
    ranks = np.zeros_like(scores.data, dtype=np.float32)
    for row in range(scores.shape[0]):
        start, end = scores.indptr[row], scores.indptr[row + 1]
        order = np.argsort(-scores.data[start:end], kind="stable")
        ranks[start + order] = np.arange(1, end - start + 1)
    return sp.csr_matrix((ranks, scores.indices.copy(), scores.indptr.copy()), shape=scores.shape)


def lookup(matrix: sp.csr_matrix, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    if len(rows) == 0:
        return np.zeros(0, dtype=np.float32)
    return np.asarray(matrix[rows, cols]).ravel().astype(np.float32)


class TagWords:
    """Each tag's stemmed words, to find them in an object's fields."""

    def __init__(self, vocabulary: Vocabulary) -> None:
        self.stems = [frozenset(words(t.subject)) for t in vocabulary]

    def field_matches(self, obj: common_pb2.CollectionObject, tag: int) -> dict[str, float]:
        """Field -> share of the tag's words found in it (fields with no match left out)."""
        stems = self.stems[tag]
        if not stems:
            return {}
        found = {}
        for name in LEXICAL_FIELDS:
            share = len(stems & set(words(getattr(obj, name)))) / len(stems)
            if share:
                found[name] = share
        return found


class Combiner:
    def __init__(self, backends: list[str], vocabulary: Vocabulary) -> None:
        self.backends = backends
        self.vocabulary = vocabulary
        self.tag_words = TagWords(vocabulary)
        levels = vocabulary.top_levels()
        names = sorted(set(levels))
        self.top_level = np.array([names.index(level) for level in levels], dtype=np.float32)
        self.booster: lightgbm.Booster | None = None
        self.threshold = 0.5

    @property
    def feature_names(self) -> list[str]:
        per_model = [f"{b}_{kind}" for b in self.backends for kind in ("score", "rank")]
        return [
            *per_model,
            "models_proposing",
            "tag_log_count",
            "tag_top_level",
            "title_word_match",
            "any_word_match",
            "artist_log_works",
            "object_fields",
            "title_words",
        ]

    def candidates(
        self,
        objects: list[common_pb2.CollectionObject],
        outputs: dict[str, sp.csr_matrix],
        tag_counts: np.ndarray,
        artist_works: np.ndarray,
    ) -> Candidates:
        union = sum((outputs[b] > 0).astype(np.float32) for b in self.backends).tocoo()
        docs, tags = union.row.astype(np.int64), union.col.astype(np.int64)
        order = np.lexsort((tags, docs))
        docs, tags = docs[order], tags[order]
        scores, ranks, columns = {}, {}, []
        for b in self.backends:
            scores[b] = lookup(outputs[b], docs, tags)
            ranks[b] = lookup(rank_matrix(outputs[b]), docs, tags)
            columns += [scores[b], np.where(ranks[b] > 0, ranks[b], 100.0)]
        proposing = sum((scores[b] > 0).astype(np.float32) for b in self.backends)
        title_match = np.zeros(len(docs), dtype=np.float32)
        any_match = np.zeros(len(docs), dtype=np.float32)
        object_words = [{name: set(words(getattr(obj, name))) for name in LEXICAL_FIELDS} for obj in objects]
        for i, (d, t) in enumerate(zip(docs, tags, strict=True)):
            stems = self.tag_words.stems[t]
            if not stems:
                continue
            fields = object_words[d]
            title_match[i] = len(stems & fields["title"]) / len(stems)
            any_match[i] = max(len(stems & f) / len(stems) for f in fields.values())
        coverage = np.array([sum(bool(getattr(o, f)) for f in OBJECT_FIELDS) for o in objects], dtype=np.float32)
        title_words = np.array([len(o.title.split()) for o in objects], dtype=np.float32)
        columns += [
            proposing,
            np.log1p(tag_counts[tags]).astype(np.float32),
            self.top_level[tags],
            title_match,
            any_match,
            np.log1p(artist_works[docs]).astype(np.float32),
            coverage[docs],
            title_words[docs],
        ]
        features = np.column_stack(columns).astype(np.float32) if len(docs) else np.zeros((0, len(columns)), np.float32)
        return Candidates(docs, tags, features, scores, ranks)

    def fit(
        self, train: Candidates, labels: np.ndarray, valid: Candidates, valid_labels: np.ndarray, seed: int
    ) -> None:
        params = {
            "objective": "binary",
            "learning_rate": 0.05,
            "num_leaves": 63,
            "min_data_in_leaf": 100,
            "feature_fraction": 0.9,
            "bagging_fraction": 0.8,
            "bagging_freq": 1,
            "lambda_l2": 1.0,
            "seed": seed,
            "deterministic": True,
            "num_threads": 0,
            "verbosity": -1,
        }
        categorical = [self.feature_names.index("tag_top_level")]
        train_set = lightgbm.Dataset(
            train.features, labels, feature_name=self.feature_names, categorical_feature=categorical
        )
        valid_set = lightgbm.Dataset(valid.features, valid_labels, reference=train_set)
        self.booster = lightgbm.train(
            params,
            train_set,
            num_boost_round=600,
            valid_sets=[valid_set],
            callbacks=[lightgbm.early_stopping(40, verbose=False)],
        )

    def predict(self, candidates: Candidates) -> np.ndarray:
        assert self.booster is not None, "combiner not trained"
        if len(candidates.docs) == 0:
            return np.zeros(0, dtype=np.float32)
        return self.booster.predict(
            candidates.features, num_iteration=self.booster.best_iteration, num_threads=_threads(len(candidates.docs))
        ).astype(np.float32)

    def contributions(self, candidates: Candidates) -> np.ndarray:
        """SHAP values: one column per feature plus the bias, in log-odds."""
        assert self.booster is not None
        return self.booster.predict(
            candidates.features,
            num_iteration=self.booster.best_iteration,
            pred_contrib=True,
            num_threads=_threads(len(candidates.docs)),
        )

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        assert self.booster is not None
        self.booster.save_model(str(directory / "combiner.txt"), num_iteration=self.booster.best_iteration)
        meta = {"backends": self.backends, "features": self.feature_names, "threshold": self.threshold}
        (directory / "combiner.json").write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, directory: Path, vocabulary: Vocabulary) -> Combiner:
        meta = json.loads((directory / "combiner.json").read_text())
        combiner = cls(meta["backends"], vocabulary)
        if meta["features"] != combiner.feature_names:
            raise ValueError(f"{directory}: combiner features {meta['features']} do not match this code's")
        combiner.booster = lightgbm.Booster(model_file=str(directory / "combiner.txt"))
        combiner.threshold = float(meta["threshold"])
        return combiner


def best_threshold(docs: np.ndarray, probabilities: np.ndarray, labels: np.ndarray, gold_counts: np.ndarray) -> float:
    """The probability cut that maximises mean per-document F1 of the suggestions kept."""
    best, best_f1 = 0.5, -1.0
    for cut in np.arange(0.05, 0.95, 0.025):
        kept = probabilities >= cut
        hits = np.bincount(docs[kept & (labels > 0)], minlength=len(gold_counts))
        given = np.bincount(docs[kept], minlength=len(gold_counts))
        mask = gold_counts > 0
        precision = np.divide(hits, given, out=np.zeros(len(hits)), where=given > 0)
        recall = hits / np.maximum(gold_counts, 1)
        f1 = np.divide(
            2 * precision * recall, precision + recall, out=np.zeros(len(hits)), where=(precision + recall) > 0
        )
        score = float(f1[mask].mean())
        if score > best_f1:
            best, best_f1 = float(cut), score
    return best


def _threads(rows: int) -> int:
    """One thread for a single object's candidates (starting a thread pool costs more than the
    work); every core for batches."""
    return 1 if rows < 5000 else 0
