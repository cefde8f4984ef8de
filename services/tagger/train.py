"""Training a model version: base models, then the combiner on documents they never saw.

1. Embed every training text and every tag name (cached by content); with an image model,
   every training image too, and the tag names in the image model's text space.
2. Hold back a seeded slice of the training documents (25% by default). Train the base models
   on the rest, let them suggest for the held-back slice, and train the combiner on those
   suggestions against the slice's real tags (its own validation part picks the number of trees
   and the probability threshold). The dev split is never touched, so it stays honest.
3. Retrain the base models on all training documents (the combiner is kept) and save.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from vitrine.common.vocabulary import Vocabulary
from vitrine.tagger.backends.base import Context, Inputs, tagged_mask
from vitrine.tagger.data import Document, label_matrix, split_holdout, tag_counts
from vitrine.tagger.embeddings import EmbeddingCache, Encoders, embed_cached, embed_objects
from vitrine.tagger.ensemble import CANDIDATES_PER_MODEL
from vitrine.tagger.model import BACKENDS, COMBINED, IMAGE_BACKENDS, TaggerModel
from vitrine.tagger.text_features import TfidfFeatures

log = logging.getLogger("vitrine.tagger.train")

BASELINES = ("most_frequent",)  # trained and evaluated, not combined
# How a tag name is put to CLIP's text tower (its training captions describe pictures).
IMAGE_PROMPT = "a picture of {}"


def train_model(
    docs: Sequence[Document],
    vocabulary: Vocabulary,
    encoders: Encoders,
    text_model: str,
    out: Path,
    seed: int = 1,
    holdout_share: float = 0.25,
    refit: bool = True,
    cache: EmbeddingCache | None = None,
    say: Callable[[str], None] = print,
    version: str = "",
) -> TaggerModel:
    """Train into `out`; the version is named `version` (default: the folder's name), since
    `out` may be the partial folder a version is written to before it is published."""
    started = time.perf_counter()
    timings: dict[str, float] = {}

    def lap(name: str, clock: float) -> float:
        timings[name] = round(time.perf_counter() - clock, 1)
        say(f"{name}: {timings[name]} s")
        return time.perf_counter()

    clock = time.perf_counter()
    docs = [d for d in docs if d.text or d.obj.image.WhichOneof("source")]
    tag_names = [t.subject for t in vocabulary]
    tag_vectors = embed_cached(tag_names, text_model, encoders.text, cache, progress=f"{text_model}: tags")
    alt_texts, alt_columns = vocabulary.alt_label_rows()
    alt_vectors = (
        embed_cached(alt_texts, text_model, encoders.text, cache, progress=f"{text_model}: alternative labels")
        if alt_texts
        else None
    )
    objects = [d.obj for d in docs]
    vectors = embed_objects(objects, text_model, tag_vectors.shape[1], encoders, cache)
    combined, tag_image_vectors = COMBINED, None
    if vectors.image is not None and encoders.image_text is not None:
        assert vectors.has_image is not None
        say(f"{int(vectors.has_image.sum())} of {len(docs)} training objects have an image: {IMAGE_BACKENDS} join in")
        prompts = [IMAGE_PROMPT.format(name) for name in tag_names]
        tag_image_vectors = embed_cached(
            prompts, encoders.image_model, encoders.image_text, cache, progress=f"{encoders.image_model}: tags"
        )
        combined = (*COMBINED, *IMAGE_BACKENDS)
    elif encoders.image is not None:
        say("no training object has an image: this version reads text only")
    trained = (*BASELINES, *combined)
    clock = lap("embedding", clock)

    tfidf = TfidfFeatures.fit(objects)
    inputs = Inputs(objects, vectors.text, tfidf.transform(objects), vectors.image, vectors.has_image)
    labels = label_matrix(docs, vocabulary)
    context = Context(
        vocabulary, tag_vectors, tag_image_vectors, alt_vectors, np.array(alt_columns, np.int64) if alt_texts else None
    )
    base_rows, held_rows = split_holdout(len(docs), holdout_share, seed)
    held_rows = held_rows[tagged_mask(labels[held_rows])]
    say(f"{len(docs)} training documents: base models learn from {len(base_rows)}, the combiner from {len(held_rows)}")

    model = TaggerModel(out, vocabulary, {"combined": list(combined)})
    model.tfidf = tfidf
    model.context = context

    def fit_backends(rows: np.ndarray, stage: str) -> None:
        nonlocal clock
        part, part_labels = inputs.subset(rows), labels[rows]
        context.tag_counts = tag_counts(part_labels)
        for name in trained:
            backend = BACKENDS[name](context)
            backend.train(part, part_labels, seed)
            model.backends[name] = backend
            clock = lap(f"{stage}: {name}", clock)

    fit_backends(base_rows, "base models on the base part")
    # The combiner learns from the base models' suggestions for the held-back slice.
    combiner = model.new_combiner(combined)
    combiner.train(inputs.subset(held_rows), labels[held_rows], seed)
    assert combiner.training is not None
    learnt = combiner.training
    say(
        f"combiner: {learnt.candidates} candidates, {learnt.true} true; "
        f"the candidates hold {learnt.recall:.1%} of the gold tags"
    )
    model.combiner = combiner
    clock = lap("combiner", clock)
    trees = combiner.booster.best_iteration if combiner.booster else 0
    say(f"combiner: {trees} trees, threshold {combiner.threshold:.3f}")

    if refit:
        fit_backends(np.arange(len(docs)), "base models on all training documents")
    else:
        say("base models kept from the base part (no refit)")

    model.meta = {
        "version": version or out.name,
        "trained_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "text_model": text_model,
        "image_model": encoders.image_model if tag_image_vectors is not None else "",
        "seed": seed,
        "training_objects": len(docs),
        "tagged_training_objects": int(tagged_mask(labels).sum()),
        "tags_known": int((model.tag_counts > 0).sum()),
        "vocabulary_size": len(vocabulary),
        "backends": list(trained),
        "combined": list(combined),
        "holdout_share": holdout_share,
        "candidates_per_model": CANDIDATES_PER_MODEL,
        "combiner_candidates": learnt.candidates,
        "candidate_recall": round(learnt.recall, 4),
        "threshold": combiner.threshold,
        "refit": refit,
        "timings_s": {**timings, "total": round(time.perf_counter() - started, 1)},
        "training_ids_file": "training_ids.txt",
        "evaluation": {},
    }
    model.save()
    (out / "training_ids.txt").write_text("\n".join(d.id for d in docs) + "\n")
    say(f"model saved to {out} in {model.meta['timings_s']['total']} s")
    return model
