"""Tagger benchmark: the cost of suggesting for one object over the whole vocabulary, against
one matrix product of the same size (the floor any model scoring every tag must pay).

Measured on a trained version (default: the newest under var/tagger/models, or --model) with
real dev objects whose text vectors come from the embedding cache or the model (embedding time
is the embedder's and is reported by bench/run.py, not here). Per batch size: objects a second
through the whole ensemble (every base model + candidate features + LightGBM), the same for the
matrix product (batch × 768) @ (768 × tags), their ratio, and each stage's share.

    python -m bench.tagger --model var/tagger/models/<version>
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

from vitrine.common.vocabulary import Vocabulary
from vitrine.tagger.data import load_documents
from vitrine.tagger.embeddings import (
    DEFAULT_CACHE,
    EmbeddingCache,
    Encoders,
    ObjectVectors,
    embed_objects,
    local_encoder,
)
from vitrine.tagger.model import COMBINED, TaggerModel
from vitrine.tagger.settings import TaggerSettings

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DEV = ROOT.parent / "shared" / "data" / "tate" / "tate_dev.jsonl.gz"


def timed(fn, repeats: int) -> float:
    """Median seconds of `repeats` calls (after one warm-up)."""
    fn()
    samples = []
    for _ in range(repeats):
        clock = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - clock)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="", help="a trained version's folder (default: newest in var/tagger/models)")
    parser.add_argument("--objects", type=int, default=256)
    parser.add_argument("--out", default=str(RESULTS / "tagger.json"))
    args = parser.parse_args()
    if args.model:
        model_dir = Path(args.model)
    else:
        versions = sorted((ROOT / "var" / "tagger" / "models").glob("*/meta.json"), key=lambda p: p.stat().st_mtime)
        if not versions:
            raise SystemExit("no trained tagger version: run `make run` once or `vitrine-tagger train`")
        model_dir = versions[-1].parent
    vocabulary = Vocabulary.load(TaggerSettings().vocabulary)
    model = TaggerModel.load(model_dir, vocabulary)
    docs = load_documents(DEV, limit=args.objects)
    encoders = Encoders(local_encoder(model.text_model))
    objects = [d.obj for d in docs]
    tags = model.context.tag_vectors
    vectors = embed_objects(objects, model.text_model, tags.shape[1], encoders, EmbeddingCache(DEFAULT_CACHE)).text
    results: dict[str, object] = {
        "machine": {"platform": platform.platform(), "processor": platform.processor()},
        "model_version": model.version,
        "tags": len(vocabulary),
        "dimension": int(tags.shape[1]),
        "training_objects": model.meta.get("training_objects"),
        "batches": {},
    }
    for batch in (1, 16, 64):
        part_objects, part_vectors = objects[:batch], vectors[:batch]
        inputs = model.inputs(part_objects, ObjectVectors(part_vectors))
        repeats = max(3, 64 // batch)

        def rank(o=part_objects, v=part_vectors) -> object:
            return model.rank(model.inputs(o, ObjectVectors(v)))

        def explain(o=part_objects, v=part_vectors) -> object:
            return model.suggest(model.inputs(o, ObjectVectors(v)), 10, 0.0)

        whole = timed(rank, repeats)
        explained = timed(explain, repeats)
        matmul = timed(lambda v=part_vectors: v @ tags.T, repeats * 4)
        stages = {
            name: timed(lambda n=name, i=inputs: model.backends[n].suggest(i, model.candidates_per_model), repeats)
            for name in COMBINED
        }
        results["batches"][str(batch)] = {
            "ensemble_ms_per_object": round(1000 * whole / batch, 3),
            "with_explanations_ms_per_object": round(1000 * explained / batch, 3),
            "matrix_product_ms_per_object": round(1000 * matmul / batch, 4),
            "ensemble_objects_per_s": round(batch / whole, 1),
            "matrix_product_objects_per_s": round(batch / matmul, 1),
            "ratio_ensemble_to_matrix_product": round(whole / matmul, 1),
            "base_model_ms_per_object": {k: round(1000 * v / batch, 3) for k, v in stages.items()},
        }
        print(f"batch {batch}: {results['batches'][str(batch)]}", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        f"## Tagger ({model.version}, {len(vocabulary)} tags, {model.meta.get('training_objects')} training objects)",
        "",
        "| batch | ensemble ms/object | with explanations ms/object | matrix product ms/object | ratio |",
        "| --- | --- | --- | --- | --- |",
    ]
    for batch, row in results["batches"].items():
        lines.append(
            f"| {batch} | {row['ensemble_ms_per_object']} | {row['with_explanations_ms_per_object']} | "
            f"{row['matrix_product_ms_per_object']} | {row['ratio_ensemble_to_matrix_product']}× |"
        )
    (out.with_suffix(".md")).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
