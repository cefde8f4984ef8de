"""A trained tagger model version: the base models, the combiner, and how they answer.

On disk (`models/tagger/<version>/`), safe formats only: `meta.json`, TF-IDF terms (JSON) and
idf (npy), tag vectors (npy), one folder per base model (npy / npz / safetensors / Omikuji's
own files / JSON) and the combiner (LightGBM's text format + JSON). Nothing is unpickled.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from vitrine.common.vocabulary import Vocabulary
from vitrine.tagger.backends.artist_prior import ArtistPrior
from vitrine.tagger.backends.base import EVIDENCE_LIMIT, Backend, Context, Inputs
from vitrine.tagger.backends.catalogue import CatalogueNeighbours
from vitrine.tagger.backends.knn import ImageKnn, TfidfKnn, VectorKnn
from vitrine.tagger.backends.linear import Linear
from vitrine.tagger.backends.most_frequent import MostFrequent
from vitrine.tagger.backends.omikuji_tree import OmikujiTree
from vitrine.tagger.backends.semantic_text import SemanticImage, SemanticText
from vitrine.tagger.embeddings import ObjectVectors
from vitrine.tagger.ensemble import CANDIDATES_PER_MODEL, Combiner, Ranked
from vitrine.tagger.suggestions import (
    CatalogueNeighbour,
    Evidence,
    Explanation,
    SimilarObject,
    Suggestion,
    SuggestionKind,
    Tag,
)
from vitrine.tagger.text_features import TfidfFeatures
from vitrine.v1 import common_pb2

BACKENDS: dict[str, type[Backend]] = {
    cls.name: cls
    for cls in (
        MostFrequent,
        ArtistPrior,
        CatalogueNeighbours,
        VectorKnn,
        ImageKnn,
        TfidfKnn,
        Linear,
        OmikujiTree,
        SemanticText,
        SemanticImage,
    )
}
# The base models whose outputs the combiner reads (most_frequent is a baseline only: the tag's
# frequency is a combiner feature of its own).
COMBINED = ("knn", "tfidf_knn", "linear", "omikuji", "artist_prior", "catalogue", "semantic_text")
# Joined to them when the training objects have images and an image model embeds them.
IMAGE_BACKENDS = ("image_knn", "semantic_image")


class TaggerModel:
    def __init__(self, directory: Path, vocabulary: Vocabulary, meta: dict[str, Any]) -> None:
        self.directory = directory
        self.vocabulary = vocabulary
        self.meta = meta
        self.backends: dict[str, Backend] = {}
        self.tfidf: TfidfFeatures | None = None
        self.combiner: Combiner | None = None
        self.context = Context(vocabulary, np.zeros((len(vocabulary), 0), np.float32))

    @property
    def version(self) -> str:
        return str(self.meta.get("version", self.directory.name))

    @property
    def text_model(self) -> str:
        return str(self.meta["text_model"])

    @property
    def image_model(self) -> str:
        """The embedder's image model this version reads images with ('' = it reads no images)."""
        return str(self.meta.get("image_model", ""))

    @property
    def combined(self) -> tuple[str, ...]:
        """The base models whose outputs this version's combiner reads."""
        return tuple(self.meta.get("combined", COMBINED))

    @property
    def tag_counts(self) -> np.ndarray:
        """Uses of each tag in the documents the base models learnt from."""
        assert self.context.tag_counts is not None
        return self.context.tag_counts

    # -- inputs and base models -----------------------------------------------------------

    def inputs(self, objects: list[common_pb2.CollectionObject], vectors: ObjectVectors) -> Inputs:
        assert self.tfidf is not None
        return Inputs(
            objects, vectors.text.astype(np.float32), self.tfidf.transform(objects), vectors.image, vectors.has_image
        )

    @property
    def candidates_per_model(self) -> int:
        """How many tags each base model proposes to the combiner (fixed at training)."""
        return int(self.meta.get("candidates_per_model", CANDIDATES_PER_MODEL))

    def new_combiner(self, combined: Sequence[str] = ()) -> Combiner:
        """A combiner over this version's base models (as they are then: training replaces them)."""
        return Combiner(self.context, self.backends, combined, self.candidates_per_model)

    def base_outputs(self, inputs: Inputs, names: tuple[str, ...] = ()) -> dict[str, sp.csr_matrix]:
        """Each named base model's top tags (default: those the combiner reads)."""
        return {name: self.backends[name].suggest(inputs, self.candidates_per_model) for name in names or self.combined}

    def rank(self, inputs: Inputs) -> Ranked:
        assert self.combiner is not None
        return self.combiner.rank(inputs)

    # -- suggestions with explanations ----------------------------------------------------

    def suggest(
        self,
        inputs: Inputs,
        k: int | Sequence[int],
        threshold: float | Sequence[float],
        existing: list[set[str]] | None = None,
        ranked: Ranked | None = None,
        explain: bool | Sequence[bool] = True,
    ) -> list[list[Suggestion]]:
        """Up to `k` suggestions per object with probability ≥ `threshold` (0 = the model's own
        threshold, chosen at training), each with its explanation unless `explain` is false (the
        explanation's SHAP values cost most of the time). `k`, `threshold` and `explain` may be
        given per object; `ranked` is `rank(inputs)` when the caller has it already."""
        ranked = ranked or self.rank(inputs)
        assert self.combiner is not None
        ks = [k] * len(inputs) if isinstance(k, int) else list(k)
        cuts = [threshold] * len(inputs) if isinstance(threshold, (int, float)) else list(threshold)
        cuts = [c if c > 0 else self.combiner.threshold for c in cuts]
        explains = [explain] * len(inputs) if isinstance(explain, bool) else list(explain)
        kept = []
        for doc in range(len(inputs)):
            order, probabilities = ranked.ranking(doc)
            kept.append(order[probabilities >= cuts[doc]][: ks[doc]])
        explained = [keep if wanted else keep[:0] for keep, wanted in zip(kept, explains, strict=True)]
        evidence = self._evidence(ranked, explained) if any(explains) else None
        answers = []
        for doc, keep in enumerate(kept):
            answer = []
            for i, position in enumerate(keep):
                suggestion = self._suggestion(ranked, int(position), existing, doc)
                if evidence is not None and explains[doc]:
                    suggestion.explanation = self._explanation(suggestion, evidence[doc][i])
                answer.append(suggestion)
            answers.append(answer)
        return answers

    def _is_supervised(self, ranked: Ranked, position: int) -> bool:
        """Some supervised model proposes the candidate (MIMIC), or only semantic ones (RECOMMEND)."""
        assert self.combiner is not None
        scores = ranked.candidates.scores
        return any(scores[b][position] > 0 for b in self.combiner.backends if BACKENDS[b].supervised)

    def _suggestion(self, ranked: Ranked, position: int, existing: list[set[str]] | None, doc: int) -> Suggestion:
        """A suggestion without its explanation."""
        term = self.vocabulary.terms[int(ranked.candidates.tags[position])]
        supervised = self._is_supervised(ranked, position)
        return Suggestion(
            tag=Tag.of(term),
            score=float(ranked.probabilities[position]),
            kind=SuggestionKind.MIMIC if supervised else SuggestionKind.RECOMMEND,
            already_present=bool(existing and term.subject in existing[doc]),
        )

    def _evidence(self, ranked: Ranked, positions: list[np.ndarray]) -> list[list[Evidence]]:
        """Per document and kept position, the evidence of the combiner and every base model
        (through their `explain` hook), merged."""
        assert self.combiner is not None
        found = [[Evidence() for _ in keep] for keep in positions]
        for backend in (self.combiner, *self.backends.values()):
            given = backend.explain(ranked, positions)
            if given is None:
                continue
            for mine, theirs in zip(found, given, strict=True):
                for merged, item in zip(mine, theirs, strict=True):
                    merged.components += item.components
                    merged.similar_objects += item.similar_objects
                    merged.matched_text += item.matched_text
                    merged.catalogue_neighbours += item.catalogue_neighbours
        return found

    def _explanation(self, suggestion: Suggestion, evidence: Evidence) -> Explanation:
        # The most similar objects over every backend that names some (text and image kNN).
        similar = sorted(evidence.similar_objects, key=lambda s: -s.similarity)
        named: dict[str, SimilarObject] = {}
        for item in similar:
            named.setdefault(item.id, item)
        carrying = list(named.values())[:EVIDENCE_LIMIT]
        next_to = evidence.catalogue_neighbours[:EVIDENCE_LIMIT]
        subject = suggestion.tag.id
        return Explanation(
            components=evidence.components,
            similar_objects=carrying,
            matched_text=evidence.matched_text,
            tag_paths=suggestion.tag.paths,
            summary=_summary(subject, evidence, carrying, next_to, suggestion.kind is SuggestionKind.MIMIC),
            catalogue_neighbours=next_to,
        )

    # -- persistence ------------------------------------------------------------------------

    def save(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        assert self.tfidf is not None and self.combiner is not None
        self.tfidf.save(self.directory)
        np.save(self.directory / "tag_vectors.npy", self.context.tag_vectors.astype(np.float16))
        if self.context.tag_image_vectors is not None:
            np.save(self.directory / "tag_image_vectors.npy", self.context.tag_image_vectors.astype(np.float16))
        if self.context.alt_label_vectors is not None and self.context.alt_label_tags is not None:
            np.save(self.directory / "tag_alt_vectors.npy", self.context.alt_label_vectors.astype(np.float16))
            np.save(self.directory / "tag_alt_columns.npy", self.context.alt_label_tags)
        np.save(self.directory / "tag_counts.npy", self.tag_counts)
        for name, backend in self.backends.items():
            folder = self.directory / "backends" / name
            folder.mkdir(parents=True, exist_ok=True)
            backend.save(folder)
        self.combiner.save(self.directory / "combiner")
        self.write_meta()

    def write_meta(self) -> None:
        (self.directory / "meta.json").write_text(json.dumps(self.meta, indent=2, sort_keys=True))

    @classmethod
    def load(cls, directory: str | Path, vocabulary: Vocabulary) -> TaggerModel:
        directory = Path(directory)
        meta_path = directory / "meta.json"
        if not meta_path.exists():
            raise FileNotFoundError(f"{directory} is not a trained tagger model (no meta.json)")
        meta = json.loads(meta_path.read_text())
        if meta.get("vocabulary_size") != len(vocabulary):
            raise ValueError(
                f"{directory} was trained with a vocabulary of {meta.get('vocabulary_size')} tags; "
                f"the tagger's vocabulary has {len(vocabulary)}: retrain or point at the right vocabulary"
            )
        model = cls(directory, vocabulary, meta)
        model.tfidf = TfidfFeatures.load(directory)
        tag_vectors = np.load(directory / "tag_vectors.npy", allow_pickle=False).astype(np.float32)
        image_path = directory / "tag_image_vectors.npy"
        tag_image_vectors = np.load(image_path, allow_pickle=False).astype(np.float32) if image_path.exists() else None
        alt_path, alt_columns_path = directory / "tag_alt_vectors.npy", directory / "tag_alt_columns.npy"
        alt_vectors = alt_columns = None
        if alt_path.exists() and alt_columns_path.exists():
            alt_vectors = np.load(alt_path, allow_pickle=False).astype(np.float32)
            alt_columns = np.load(alt_columns_path, allow_pickle=False).astype(np.int64)
            if len(alt_columns) != len(alt_vectors) or (len(alt_columns) and alt_columns.max() >= len(vocabulary)):
                raise ValueError(f"{directory}: the alternative labels' vectors and columns do not match")
        tag_counts = np.load(directory / "tag_counts.npy", allow_pickle=False)
        model.context = Context(vocabulary, tag_vectors, tag_image_vectors, alt_vectors, alt_columns, tag_counts)
        for name in meta["backends"]:
            backend = BACKENDS[name](model.context)
            backend.load(directory / "backends" / name)
            model.backends[name] = backend
        model.combiner = model.new_combiner()
        model.combiner.load(directory / "combiner")
        return model


def _summary(
    subject: str,
    evidence: Evidence,
    carrying: list[SimilarObject],
    next_to: list[CatalogueNeighbour],
    supervised: bool,
) -> str:
    # Compared as the wire's 32-bit floats, so that the summary names what a client sees first.
    top = max(evidence.components, key=lambda c: np.float32(c.contribution))
    parts = [f"'{subject}': strongest evidence from {top.component}"]
    if carrying:
        parts.append(f"{len(carrying)} of the most similar tagged objects carry it (e.g. {carrying[0].id})")
    if next_to:
        parts.append(f"{next_to[0].id}, catalogued {next_to[0].gap} number(s) away, carries it")
    words_found = [m for m in evidence.matched_text if m.field != "metadata (meaning)"]
    if words_found:
        parts.append(f"its words appear in the {words_found[0].field}")
    if not supervised:
        parts.append("recommended on meaning alone: curators have not used it on objects like this")
    return "; ".join(parts) + "."
