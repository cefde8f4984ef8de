"""A trained tagger model version: the base models, the combiner, and how they answer.

On disk (`models/tagger/<version>/`), safe formats only: `meta.json`, TF-IDF terms (JSON) and
idf (npy), tag vectors (npy), one folder per base model (npy / npz / safetensors / Omikuji's
own files / JSON) and the combiner (LightGBM's text format + JSON). Nothing is unpickled.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from vitrine.common.vocabulary import Vocabulary
from vitrine.tagger.backends.artist_prior import ArtistPrior
from vitrine.tagger.backends.base import Backend, Context, Inputs, carries
from vitrine.tagger.backends.catalogue import CatalogueNeighbours
from vitrine.tagger.backends.knn import ImageKnn, TfidfKnn, VectorKnn
from vitrine.tagger.backends.linear import Linear
from vitrine.tagger.backends.most_frequent import MostFrequent
from vitrine.tagger.backends.omikuji_tree import OmikujiTree
from vitrine.tagger.backends.semantic_text import SemanticImage, SemanticText
from vitrine.tagger.embeddings import ObjectVectors
from vitrine.tagger.ensemble import Candidates, Combiner
from vitrine.tagger.text_features import TfidfFeatures, words
from vitrine.v1 import common_pb2, tagger_pb2

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
CANDIDATES_PER_MODEL = 40
SIMILAR_OBJECTS = 3
NEIGHBOURS_FOR_EXPLANATIONS = 50


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


# Suggestion kind by "some supervised model proposes it".
KINDS = {True: tagger_pb2.SUGGESTION_KIND_MIMIC, False: tagger_pb2.SUGGESTION_KIND_RECOMMEND}


class TaggerModel:
    def __init__(self, directory: Path, vocabulary: Vocabulary, meta: dict[str, Any]) -> None:
        self.directory = directory
        self.vocabulary = vocabulary
        self.meta = meta
        self.backends: dict[str, Backend] = {}
        self.tfidf: TfidfFeatures | None = None
        self.combiner: Combiner | None = None
        self.tag_counts = np.zeros(len(vocabulary), dtype=np.int64)
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

    def base_outputs(self, inputs: Inputs, names: tuple[str, ...] = ()) -> dict[str, sp.csr_matrix]:
        """Each named base model's top tags (default: those the combiner reads)."""
        return {name: self.backends[name].suggest(inputs, self.candidates_per_model) for name in names or self.combined}

    def artist_works(self, objects: list[common_pb2.CollectionObject]) -> np.ndarray:
        prior = self.backends["artist_prior"]
        assert isinstance(prior, ArtistPrior)
        return np.array([prior.artist_works(o.artist) for o in objects], dtype=np.float32)

    def rank(self, inputs: Inputs) -> Ranked:
        assert self.combiner is not None
        outputs = self.base_outputs(inputs)
        candidates = self.combiner.candidates(
            inputs.objects, outputs, self.tag_counts, self.artist_works(inputs.objects)
        )
        return Ranked(inputs, outputs, candidates, self.combiner.predict(candidates))

    # -- suggestions with explanations ----------------------------------------------------

    def suggest(
        self,
        inputs: Inputs,
        k: int | Sequence[int],
        threshold: float | Sequence[float],
        existing: list[set[str]] | None = None,
        ranked: Ranked | None = None,
        explain: bool | Sequence[bool] = True,
    ) -> list[list[tagger_pb2.TagSuggestion]]:
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
        similar = self._similar_objects(inputs) if any(explains) else [[] for _ in range(len(inputs))]
        answers = []
        for doc in range(len(inputs)):
            order, probabilities = ranked.ranking(doc)
            keep = order[probabilities >= cuts[doc]][: ks[doc]]
            if not explains[doc]:
                answers.append([self._bare_suggestion(ranked, position, existing, doc) for position in keep])
                continue
            shap = self.combiner.contributions(ranked.candidates.select(keep)) if len(keep) else None
            answer = []
            for i, position in enumerate(keep):
                tag = int(ranked.candidates.tags[position])
                answer.append(self._suggestion(ranked, position, tag, shap[i], similar[doc], existing, doc))
            answers.append(answer)
        return answers

    def _is_supervised(self, ranked: Ranked, position: int) -> bool:
        """Some supervised model proposes the candidate (MIMIC), or only semantic ones (RECOMMEND)."""
        assert self.combiner is not None
        scores = ranked.candidates.scores
        return any(scores[b][position] > 0 for b in self.combiner.backends if BACKENDS[b].supervised)

    def _bare_suggestion(
        self, ranked: Ranked, position: int, existing: list[set[str]] | None, doc: int
    ) -> tagger_pb2.TagSuggestion:
        """A suggestion without its explanation."""
        term = self.vocabulary.terms[int(ranked.candidates.tags[position])]
        return tagger_pb2.TagSuggestion(
            tag=common_pb2.Tag(id=term.subject, label=term.subject, paths=list(term.paths), uri=term.uri),
            score=float(ranked.probabilities[position]),
            kind=KINDS[self._is_supervised(ranked, position)],
            already_present=bool(existing and term.subject in existing[doc]),
        )

    def _suggestion(
        self,
        ranked: Ranked,
        position: int,
        tag: int,
        shap: np.ndarray,
        similar: list[tuple[float, VectorKnn, int]],
        existing: list[set[str]] | None,
        doc: int,
    ) -> tagger_pb2.TagSuggestion:
        assert self.combiner is not None
        term = self.vocabulary.terms[tag]
        candidates = ranked.candidates
        names = self.combiner.feature_names
        total = float(np.abs(shap[:-1]).sum()) or 1.0
        components = []
        for b in self.combiner.backends:
            share = sum(shap[names.index(f"{b}_{kind}")] for kind in ("score", "rank")) / total
            components.append(
                common_pb2.ComponentEvidence(
                    component=b,
                    score=float(candidates.scores[b][position]),
                    rank=int(candidates.ranks[b][position]),
                    contribution=float(share),
                )
            )
        prior_share = float(shap[names.index("tag_log_count")] + shap[names.index("artist_log_works")]) / total
        components.append(common_pb2.ComponentEvidence(component="tag_frequency", contribution=prior_share))
        carrying: list[common_pb2.SimilarObject] = []
        for similarity, source, n in similar:
            if carries(source.labels, n, tag) and source.ids[n] not in {c.id for c in carrying}:
                carrying.append(
                    common_pb2.SimilarObject(id=source.ids[n], title=source.titles[n], similarity=similarity)
                )
            if len(carrying) == SIMILAR_OBJECTS:
                break
        obj = ranked.inputs.objects[doc]
        matched = [
            common_pb2.MatchedText(field=f, text=_matched_words(getattr(obj, f), term.subject), similarity=share)
            for f, share in self.combiner.tag_words.field_matches(obj, tag).items()
        ]
        for backend, field in (("semantic_text", "metadata (meaning)"), ("semantic_image", "image (meaning)")):
            semantic = float(candidates.scores[backend][position]) if backend in candidates.scores else 0.0
            if semantic > 0:
                matched.append(common_pb2.MatchedText(field=field, text=term.subject, similarity=semantic))
        catalogue = self.backends.get("catalogue")
        next_to = [
            common_pb2.CatalogueNeighbour(id=i, title=title, gap=gap)
            for i, title, gap in (catalogue.carrying(obj.id, tag) if isinstance(catalogue, CatalogueNeighbours) else [])
        ][:SIMILAR_OBJECTS]
        supervised = self._is_supervised(ranked, position)
        suggestion = self._bare_suggestion(ranked, position, existing, doc)
        suggestion.explanation.CopyFrom(
            common_pb2.Explanation(
                components=components,
                similar_objects=carrying,
                matched_text=matched,
                tag_paths=list(term.paths),
                summary=_summary(term.subject, components, carrying, next_to, matched, supervised),
                catalogue_neighbours=next_to,
            )
        )
        return suggestion

    def _similar_objects(self, inputs: Inputs) -> list[list[tuple[float, VectorKnn, int]]]:
        """Per object, its nearest tagged training objects by text and (when it has one) by
        image, most similar first: (similarity, the kNN model holding them, row)."""
        found: list[list[tuple[float, VectorKnn, int]]] = [[] for _ in range(len(inputs))]
        for name in ("knn", "image_knn"):
            source = self.backends.get(name)
            if not isinstance(source, VectorKnn) or len(source.ids) == 0:
                continue
            _, present = source.usable(inputs)
            if not present.any():
                continue
            neighbours, sims = source.nearest(inputs, NEIGHBOURS_FOR_EXPLANATIONS)
            for doc in np.flatnonzero(present):
                found[doc] += [
                    (float(s), source, int(n)) for n, s in zip(neighbours[doc], sims[doc], strict=True) if s > 0
                ]
        for rows in found:
            rows.sort(key=lambda row: -row[0])
        return found

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
        model.context = Context(vocabulary, tag_vectors, tag_image_vectors, alt_vectors, alt_columns)
        model.tag_counts = np.load(directory / "tag_counts.npy", allow_pickle=False)
        for name in meta["backends"]:
            backend = BACKENDS[name](model.context)
            backend.load(directory / "backends" / name)
            model.backends[name] = backend
        model.combiner = Combiner.load(directory / "combiner", vocabulary)
        return model


def _matched_words(text: str, subject: str) -> str:
    stems = set(words(subject))
    return " ".join(w for w in text.split() if set(words(w)) & stems)


def _summary(
    subject: str,
    components: list[common_pb2.ComponentEvidence],
    carrying: list[common_pb2.SimilarObject],
    next_to: list[common_pb2.CatalogueNeighbour],
    matched: list[common_pb2.MatchedText],
    supervised: bool,
) -> str:
    top = max(components, key=lambda c: c.contribution)
    parts = [f"'{subject}': strongest evidence from {top.component}"]
    if carrying:
        parts.append(f"{len(carrying)} of the most similar tagged objects carry it (e.g. {carrying[0].id})")
    if next_to:
        parts.append(f"{next_to[0].id}, catalogued {next_to[0].gap} number(s) away, carries it")
    words_found = [m for m in matched if m.field != "metadata (meaning)"]
    if words_found:
        parts.append(f"its words appear in the {words_found[0].field}")
    if not supervised:
        parts.append("recommended on meaning alone: curators have not used it on objects like this")
    return "; ".join(parts) + "."
