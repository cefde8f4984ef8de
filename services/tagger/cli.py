"""`vitrine-tagger`: train and evaluate tagger model versions from the command line.

vitrine-tagger train --data ../shared/data/tate/tate_train.jsonl.gz --out-dir var/tagger/models [--version v1]
vitrine-tagger eval  --data ../shared/data/tate/tate_dev.jsonl.gz --model var/tagger/models/v1 --out var/tagger/eval
vitrine-tagger retrain --data ../shared/data/tate/tate_train.jsonl.gz --base newest \
    --out-dir var/tagger/models --eval-data ../shared/data/tate/tate_dev.jsonl.gz

With --out-dir a version is trained into DIR/.partial-NAME and renamed to DIR/NAME once complete
(NAME: --version, default v-<UTC yyyymmdd-HHMMSS>), so taggers polling DIR only ever see whole
versions; --out PATH writes into PATH directly. --data and --eval-data may be http(s) URLs.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

from vitrine.common.vocabulary import Vocabulary
from vitrine.tagger.audit import audit as run_audit
from vitrine.tagger.audit import statistics as audit_statistics
from vitrine.tagger.audit import write_report as write_audit
from vitrine.tagger.data import Document, load_documents, local_copy, sample
from vitrine.tagger.embeddings import (
    DEFAULT_CACHE,
    EmbeddingCache,
    Encoders,
    local_encoder,
    service_encoder,
    service_image_encoder,
)
from vitrine.tagger.evaluate import EvaluationError, evaluate_model, summary_for_meta, write_report
from vitrine.tagger.feedback import apply_feedback, open_feedback_store
from vitrine.tagger.model import TaggerModel
from vitrine.tagger.model_store import default_version_name, newest_version, writing_version
from vitrine.tagger.settings import TaggerSettings
from vitrine.tagger.train import train_model
from vitrine.v1 import tagger_pb2


def _encoders(args: argparse.Namespace, text_model: str, image_model: str) -> Encoders:
    text = (
        service_encoder(text_model, args.embedder) if args.embedder else local_encoder(text_model, threads=args.threads)
    )
    if not image_model:
        return Encoders(text)
    if not args.embedder:
        raise ValueError(f"image model {image_model!r}: images are embedded by the embedder service; give --embedder")
    return Encoders(
        text,
        image_model,
        service_image_encoder(image_model, args.embedder),
        service_encoder(image_model, args.embedder),
    )


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="objects with subjects: JSON lines (.gz) in the shared format")
    parser.add_argument(
        "--vocabulary",
        default=TaggerSettings().vocabulary,
        help="subject vocabulary: JSON lines, or SKOS (.ttl, .rdf/.xml/.owl, .jsonld, .nt; .gz allowed)",
    )
    parser.add_argument(
        "--vocabulary-language",
        default=TaggerSettings().vocabulary_language,
        help="preferred languages of SKOS labels, in order (fi,en); the tagger's vocabulary_language must match",
    )
    parser.add_argument("--limit", type=int, default=0, help="use a seeded sample of this many objects (0 = all)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--embedder", default="", help="host:port of a running embedder (default: load the model here)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads for the in-process model (0 = default)")
    parser.add_argument("--cache", default=str(DEFAULT_CACHE), help="embedding cache (SQLite); '' disables it")
    parser.add_argument(
        "--download-timeout-s", type=float, default=300.0, help="most time one http(s) data file may take"
    )
    parser.add_argument("--max-download-mb", type=float, default=2048.0, help="largest http(s) data file accepted")


def _training(parser: argparse.ArgumentParser) -> None:
    _common(parser)
    out = parser.add_mutually_exclusive_group(required=True)
    out.add_argument("--out", default="", help="folder of the new version, written in place: var/tagger/models/v1")
    out.add_argument(
        "--out-dir",
        default="",
        help="model folder (the taggers' model_dir): written to DIR/.partial-NAME, then renamed DIR/NAME",
    )
    parser.add_argument("--version", default="", help="with --out-dir: the version's name (default v-<UTC time>)")
    parser.add_argument("--holdout", type=float, default=0.25, help="share of training held back for the combiner")
    parser.add_argument(
        "--no-refit", action="store_true", help="keep the base models trained without the held-back slice"
    )
    parser.add_argument("--eval-limit", type=int, default=0, help="evaluate on a seeded sample of this many (0 = all)")


@contextlib.contextmanager
def _new_version(args: argparse.Namespace) -> Iterator[tuple[Path, str]]:
    """(folder to write the new version into, its name); with --out-dir the folder is published
    under the name when the block completes, and removed when it fails."""
    if args.out:
        if args.version:
            raise ValueError("--version names a version in --out-dir; with --out the folder's name is the version")
        out = Path(args.out)
        if (out / "meta.json").exists():
            raise ValueError(f"{out} already holds a trained version; choose a new folder")
        yield out, ""
        return
    name = args.version or default_version_name()
    with writing_version(Path(args.out_dir), name) as partial:
        yield partial, name
    print(f"version {name!r} published: {Path(args.out_dir) / name}")


def _train_and_evaluate(
    args: argparse.Namespace,
    docs: list,
    vocabulary: Vocabulary,
    encoders: Encoders,
    text_model: str,
    cache: EmbeddingCache | None,
    out: Path,
    version: str,
) -> TaggerModel:
    model = train_model(
        docs,
        vocabulary,
        encoders,
        text_model,
        out,
        seed=args.seed,
        holdout_share=args.holdout,
        refit=not args.no_refit,
        cache=cache,
        version=version,
    )
    if args.eval_data:
        eval_docs = _documents(args.eval_data, vocabulary)
        if args.eval_limit:
            eval_docs = sample(eval_docs, args.eval_limit, args.seed)
        metrics = evaluate_model(model, eval_docs, encoders, cache)
        print(write_report(metrics, out / "evaluation"))
        model.meta["evaluation"] = summary_for_meta(metrics)
        model.write_meta()
    return model


def _base_folder(args: argparse.Namespace) -> Path:
    if args.base != "newest":
        return Path(args.base)
    if not args.out_dir:
        raise ValueError("--base newest means the newest version in --out-dir: give --out-dir")
    newest = newest_version(Path(args.out_dir))
    if newest is None:
        raise ValueError(f"--base newest: {args.out_dir} holds no trained version yet; train one first")
    return newest


def _retrain(args: argparse.Namespace, docs: list, vocabulary: Vocabulary, cache: EmbeddingCache | None) -> int:
    base = TaggerModel.load(_base_folder(args), vocabulary)
    print(f"base version: {base.version} ({base.directory})")
    store = open_feedback_store(args.feedback)
    summary = apply_feedback(docs, store)
    print(f"feedback folded in: {summary}")
    encoders = _encoders(args, base.text_model, base.image_model)
    with _new_version(args) as (out, version):
        model = _train_and_evaluate(args, docs, vocabulary, encoders, base.text_model, cache, out, version)
        model.meta["retrained_from"] = base.version
        model.meta["feedback"] = summary
        model.write_meta()
        old = base.meta.get("evaluation", {}).get("ensemble", {}).get("f1@5")
        new = model.meta["evaluation"]["ensemble"]["f1@5"]
        print(f"dev F1@5: {new:.4f} (base {base.version}: {old if old is None else round(old, 4)})")
        refused = old is not None and new < old and not args.force
        if refused:
            # Keep the files for inspection, but not as a version anyone serves.
            (model.directory / "meta.json").rename(model.directory / "meta.refused.json")
    if refused:
        print(
            f"vitrine-tagger: the new version scores below {base.version} on dev; kept in "
            f"{args.out or Path(args.out_dir) / version} as meta.refused.json, not servable (--force keeps it)",
            file=sys.stderr,
        )
        return 3
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="vitrine-tagger", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train a model version")
    _training(train)
    train.add_argument("--text-model", default="mpnet", choices=("mpnet", "minilm"))
    train.add_argument(
        "--image-model",
        default="",
        help="the embedder's image model with a text tower (clip) for objects that have images; needs --embedder",
    )
    train.add_argument("--eval-data", default="", help="evaluate on this file afterwards and record it in the version")
    retrain = commands.add_parser(
        "retrain", help="train a new version with the curators' feedback folded in; refused if worse on dev"
    )
    _training(retrain)
    retrain.add_argument(
        "--base",
        required=True,
        help="the version to improve on (its models and dev score): its folder, or newest (the newest in --out-dir)",
    )
    retrain.add_argument(
        "--feedback",
        default=TaggerSettings().feedback_db,
        help="the tagger's feedback: a SQLite file or postgresql:// URL",
    )
    retrain.add_argument(
        "--eval-data", required=True, help="dev objects: the new version must not score below the base"
    )
    retrain.add_argument("--force", action="store_true", help="keep the new version even if it scores below the base")
    audit = commands.add_parser("audit", help="data-quality audit: JSON findings and an HTML report")
    _common(audit)
    audit.add_argument("--out", required=True, help="folder for audit.json and audit.html")
    audit.add_argument("--model", default="", help="a trained version: adds likely missing and wrong tags")
    audit.add_argument(
        "--missing-above", type=float, default=0.9, help="suggestions this probable that an object lacks are findings"
    )
    evaluate = commands.add_parser("eval", help="evaluate a model version on objects it never saw")
    _common(evaluate)
    evaluate.add_argument("--model", required=True, help="a trained version's folder")
    evaluate.add_argument("--out", required=True, help="folder for metrics.json and metrics.md")
    evaluate.add_argument(
        "--record", action="store_true", help="store the summary in the version (GetTaggerInfo shows it)"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="vitrine-tagger-data-") as downloads:
        try:
            limit = int(args.max_download_mb * 1024 * 1024)
            for name in ("data", "eval_data"):
                if getattr(args, name, ""):
                    local = local_copy(getattr(args, name), Path(downloads), args.download_timeout_s, limit)
                    setattr(args, name, local)
            return _run(args)
        except (EvaluationError, FileNotFoundError, ValueError) as exc:
            print(f"vitrine-tagger: {exc}", file=sys.stderr)
            return 2


def _documents(path: str, vocabulary: Vocabulary) -> list[Document]:
    """The objects with their subjects as the vocabulary names them: data that gives concepts by
    URI or by another label (a harvested LIDO record's subjectConcept) trains the same tags."""
    docs = load_documents(path)
    for doc in docs:
        doc.subjects = vocabulary.canonical_subjects(doc.subjects)
    return docs


def _run(args: argparse.Namespace) -> int:
    vocabulary = Vocabulary.load(args.vocabulary, args.vocabulary_language)
    cache = EmbeddingCache(args.cache) if args.cache else None
    docs = _documents(args.data, vocabulary)
    if args.limit:
        docs = sample(docs, args.limit, args.seed)
    if args.command == "train":
        encoders = _encoders(args, args.text_model, args.image_model)
        with _new_version(args) as (out, version):
            _train_and_evaluate(args, docs, vocabulary, encoders, args.text_model, cache, out, version)
    elif args.command == "retrain":
        return _retrain(args, docs, vocabulary, cache)
    elif args.command == "audit":
        model = TaggerModel.load(args.model, vocabulary) if args.model else None
        encoders = _encoders(args, model.text_model, model.image_model) if model else None
        findings = run_audit(docs, vocabulary, model, encoders, cache, args.missing_above)
        write_audit(findings, audit_statistics(docs), Path(args.out))
        counts = Counter(tagger_pb2.FindingKind.Name(f.kind) for f in findings)
        print(f"{len(findings)} findings written to {args.out}/audit.json and audit.html: {dict(counts)}")
    else:
        model = TaggerModel.load(args.model, vocabulary)
        metrics = evaluate_model(model, docs, _encoders(args, model.text_model, model.image_model), cache)
        print(write_report(metrics, Path(args.out)))
        if args.record:
            model.meta["evaluation"] = summary_for_meta(metrics)
            model.write_meta()
    return 0


if __name__ == "__main__":
    sys.exit(main())
