"""Step 2: the learned combiner, one more backend: it answers from the base models' outputs.

Every tag that some base model ranks in its top list becomes a candidate for the object; each
candidate is described by every base model's score and rank, the tag's training frequency and
place in the hierarchy, whether the object's words contain the tag's words, and the object's
field coverage. A gradient-boosted classifier (LightGBM, binary log-loss) trained on documents
the base models never saw turns that into a calibrated probability that a curator would give
the tag. Its per-feature contributions (SHAP values) become the explanation's per-model shares.
It is trained (`train`) on documents its base models did not learn from: train.py holds them back.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import lightgbm
import numpy as np
import scipy.sparse as sp

from vitrine.common.vocabulary import Vocabulary
from vitrine.tagger.backends.artist_prior import ArtistPrior
from vitrine.tagger.backends.base import Backend, Context, Inputs, top_k_sparse
from vitrine.tagger.suggestions import ComponentEvidence, Evidence, MatchedText
from vitrine.tagger.text_features import words
from vitrine.v1 import common_pb2

LEXICAL_FIELDS = ("title", "medium", "classification", "description")
OBJECT_FIELDS = ("title", "artist", "date", "medium", "classification", "description")
CANDIDATES_PER_MODEL = 40


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


@dataclass
class Ranked:
    """The combiner's answer for a batch: candidates, their probabilities, the base outputs."""

    inputs: Inputs
    outputs: dict[str, sp.csr_matrix]
    candidates: Candidates
    probabilities: np.ndarray

    def ranking(self, doc: int) -> tuple[np.ndarray, np.ndarray]:
        """Positions into the candidate arrays for one document, best first, and probabilities."""
        start, end = np.searchsorted(self.candidates.docs, [doc, doc + 1])
        order = start + np.argsort(-self.probabilities[start:end], kind="stable")
        return order, self.probabilities[order]


@dataclass(frozen=True)
class CombinerTraining:
    """What the combiner learnt from: its candidates, the true ones, the gold tags they hold."""

    candidates: int
    true: int
    recall: float


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


class Combiner(Backend):
    """The ensemble over `sources` (the model version's base models, by name), of which it reads
    those named in `combined` (fixed at training; `load` reads them back)."""

    name = "combiner"

    def __init__(
        self,
        context: Context,
        sources: Mapping[str, Backend],
        combined: Sequence[str] = (),
        candidates_per_model: int = CANDIDATES_PER_MODEL,
    ) -> None:
        super().__init__(context)
        self.sources = sources
        self.backends = list(combined)
        self.candidates_per_model = candidates_per_model
        vocabulary = context.vocabulary
        self.tag_words = TagWords(vocabulary)
        levels = vocabulary.top_levels()
        names = sorted(set(levels))
        self.top_level = np.array([names.index(level) for level in levels], dtype=np.float32)
        self.booster: lightgbm.Booster | None = None
        self.threshold = 0.5
        self.training: CombinerTraining | None = None

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

    # -- the backend contract ---------------------------------------------------------------

    def source_outputs(self, inputs: Inputs) -> dict[str, sp.csr_matrix]:
        """Each combined base model's top tags."""
        return {b: self.sources[b].suggest(inputs, self.candidates_per_model) for b in self.backends}

    def artist_works(self, objects: Sequence[common_pb2.CollectionObject]) -> np.ndarray:
        prior = cast(ArtistPrior, self.sources["artist_prior"])
        return np.array([prior.artist_works(o.artist) for o in objects], dtype=np.float32)

    def rank(self, inputs: Inputs) -> Ranked:
        outputs = self.source_outputs(inputs)
        candidates = self.candidates_for(inputs, outputs)
        return Ranked(inputs, outputs, candidates, self.predict(candidates))

    def suggest(self, inputs: Inputs, limit: int) -> sp.csr_matrix:
        """The `limit` most probable candidates per document, by probability."""
        ranked = self.rank(inputs)
        c = ranked.candidates
        shape = (len(inputs), len(self.context.vocabulary))
        return top_k_sparse(sp.csr_matrix((ranked.probabilities, (c.docs, c.tags)), shape=shape), limit)

    def train(self, inputs: Inputs, labels: sp.csr_matrix, seed: int) -> None:
        """Learn from the base models' suggestions for `inputs` (documents they did not learn from)
        against their real tags; a seeded fifth of the documents picks the number of trees and
        the probability threshold."""
        candidates = self.candidates_for(inputs, self.source_outputs(inputs))
        truth = np.asarray(labels[candidates.docs, candidates.tags]).ravel()
        gold_counts = np.asarray(labels.sum(axis=1)).ravel()
        recall = truth.sum() / max(gold_counts.sum(), 1)
        self.training = CombinerTraining(len(truth), int(truth.sum()), float(recall))
        valid_docs = np.random.default_rng(seed + 1).random(len(inputs)) < 0.2
        is_valid = valid_docs[candidates.docs]
        train_part = candidates.select(np.flatnonzero(~is_valid))
        valid_part = candidates.select(np.flatnonzero(is_valid))
        self.fit(train_part, truth[~is_valid], valid_part, truth[is_valid], seed)
        valid_probabilities = self.predict(valid_part)
        valid_doc_index = np.flatnonzero(valid_docs)
        remap = {d: i for i, d in enumerate(valid_doc_index)}
        self.threshold = best_threshold(
            np.array([remap[d] for d in valid_part.docs], dtype=np.int64),
            valid_probabilities,
            truth[is_valid],
            gold_counts[valid_doc_index],
        )

    def explain(self, ranked: Ranked, positions: Sequence[np.ndarray]) -> list[list[Evidence]] | None:
        """Each combined model's score, rank and SHAP share of the final score (the tag's
        frequency counted as one more component), and the object's fields holding the tag's words."""
        names = self.feature_names
        found = []
        for doc, kept in enumerate(positions):
            shap = self.contributions(ranked.candidates.select(kept)) if len(kept) else np.zeros((0, len(names) + 1))
            obj = ranked.inputs.objects[doc]
            found.append([self._evidence(ranked, int(p), obj, row) for p, row in zip(kept, shap, strict=True)])
        return found

    def _evidence(self, ranked: Ranked, position: int, obj: common_pb2.CollectionObject, shap: np.ndarray) -> Evidence:
        names = self.feature_names
        candidates = ranked.candidates
        total = float(np.abs(shap[:-1]).sum()) or 1.0
        components = []
        for b in self.backends:
            share = sum(shap[names.index(f"{b}_{kind}")] for kind in ("score", "rank")) / total
            components.append(
                ComponentEvidence(
                    b, float(candidates.scores[b][position]), int(candidates.ranks[b][position]), float(share)
                )
            )
        prior_share = float(shap[names.index("tag_log_count")] + shap[names.index("artist_log_works")]) / total
        components.append(ComponentEvidence("tag_frequency", contribution=prior_share))
        tag = int(candidates.tags[position])
        subject = self.context.vocabulary.terms[tag].subject
        matched = [
            MatchedText(f, _matched_words(getattr(obj, f), subject), share)
            for f, share in self.tag_words.field_matches(obj, tag).items()
        ]
        return Evidence(components=components, matched_text=matched)

    # -- features and the booster -----------------------------------------------------------

    def candidates_for(self, inputs: Inputs, outputs: dict[str, sp.csr_matrix]) -> Candidates:
        assert self.context.tag_counts is not None
        return self.candidates(inputs.objects, outputs, self.context.tag_counts, self.artist_works(inputs.objects))

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

    def load(self, directory: Path) -> None:
        meta = json.loads((directory / "combiner.json").read_text())
        self.backends = list(meta["backends"])
        if meta["features"] != self.feature_names:
            raise ValueError(f"{directory}: combiner features {meta['features']} do not match this code's")
        self.booster = lightgbm.Booster(model_file=str(directory / "combiner.txt"))
        self.threshold = float(meta["threshold"])


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


def _matched_words(text: str, subject: str) -> str:
    stems = set(words(subject))
    return " ".join(w for w in text.split() if set(words(w)) & stems)


def _threads(rows: int) -> int:
    """One thread for a single object's candidates (starting a thread pool costs more than the
    work); every core for batches."""
    return 1 if rows < 5000 else 0
