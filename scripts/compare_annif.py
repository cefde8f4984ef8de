"""Reproducible comparison with Annif 1.4.3 on the Tate dev split (`make compare-annif`).

Builds an Annif project in a work folder (default var/annif/): the subject vocabulary as Annif's
TSV vocabulary (one URI per subject, http://vitrine.local/subject/<line index>), the train and dev
splits as Annif TSV document corpora (text = title, artist, date, medium, classification and
movements; subjects as <uri> lists), a projects.cfg, then runs the annif CLI: load-vocab, train,
and index (top-10 suggestions for every dev document in one batch). The suggestions are mapped
back to subject strings and scored with services/evaluation/metrics.py's `tagger_metrics`, exactly
the repository's definitions, overall and without Turner.

Runs with the Annif virtual environment's Python (.venv-annif, made by `make compare-annif`),
which has numpy; metrics.py is loaded from its path since the vitrine package is not installed
there. Usage:

    .venv-annif/bin/python scripts/compare_annif.py [--workdir var/annif] [--limit-train N]
        [--limit-dev N] [--backend omikuji_bonsai ...]

Writes <workdir>/metrics.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("VITRINE_DATA_DIR", str(REPO.parent / "shared" / "data"))) / "tate"
METRICS_PY = REPO / "services" / "evaluation" / "metrics.py"
TURNER = "Joseph Mallord William Turner"
URI_PREFIX = "http://vitrine.local/subject/"
VOCAB_ID = "tate"
LANGUAGE = "en"
TEXT_FIELDS = ("title", "artist", "date", "medium", "classification")
TOP_K = 10

# Annif project settings per backend; the method name in metrics.json is "annif_<key>".
BACKENDS: dict[str, dict[str, str]] = {
    # Omikuji in its Bonsai configuration, as Annif's documentation describes it.
    "omikuji_bonsai": {
        "backend": "omikuji",
        "analyzer": "snowball(english)",
        "cluster_balanced": "False",
        "cluster_k": "100",
        "max_depth": "3",
        "limit": "100",
    },
    # Omikuji with Annif's defaults (Parabel-like: balanced 2-means, deep tree).
    "omikuji_parabel": {"backend": "omikuji", "analyzer": "snowball(english)", "limit": "100"},
    # TF-IDF similarity baseline (quick).
    "tfidf": {"backend": "tfidf", "analyzer": "snowball(english)", "limit": "100"},
}


def load_metrics() -> ModuleType:
    """services/evaluation/metrics.py by path (it only needs numpy)."""
    spec = importlib.util.spec_from_file_location("vitrine_evaluation_metrics", METRICS_PY)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {METRICS_PY}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_jsonl(path: Path, limit: int | None = None) -> Iterator[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        count = 0
        for line in lines:
            if not line.strip():
                continue
            yield json.loads(line)
            count += 1
            if limit and count >= limit:
                return


def clean(value: object) -> str:
    """One line of text without tabs (Annif's TSV formats split on them)."""
    return " ".join(str(value).split())


def document_text(record: dict) -> str:
    parts = [clean(record[f]) for f in TEXT_FIELDS if record.get(f)]
    parts += [clean(m) for m in record.get("movements") or []]
    return " ; ".join(p for p in parts if p)


def uri_field(subjects: list[str], uri_of: dict[str, str]) -> str:
    uris = dict.fromkeys(uri_of[s] for s in subjects if s in uri_of)  # unique, in order
    return " ".join(f"<{u}>" for u in uris)


def write_vocabulary(subjects: list[str], path: Path) -> dict[str, str]:
    uri_of: dict[str, str] = {}
    with path.open("w", encoding="utf-8") as out:
        for index, subject in enumerate(subjects):
            uri = f"{URI_PREFIX}{index}"
            uri_of.setdefault(subject, uri)
            out.write(f"<{uri}>\t{clean(subject)}\n")
    return uri_of


def write_projects_cfg(path: Path, backends: list[str]) -> None:
    sections = []
    for key in backends:
        settings = {"name": f"Tate {key}", "language": LANGUAGE, "vocab": VOCAB_ID, **BACKENDS[key]}
        body = "\n".join(f"{k}={v}" for k, v in settings.items())
        sections.append(f"[{project_id(key)}]\n{body}\n")
    path.write_text("\n".join(sections), encoding="utf-8")


def project_id(key: str) -> str:
    return "tate-" + key.replace("_", "-")


def ensure_punkt(python: Path, workdir: Path, env: dict[str, str]) -> str:
    """Annif's analyzers tokenize with NLTK, which needs its `punkt_tab` data and would download it
    (impossible offline). Use an installed copy when NLTK finds one; otherwise write an untrained
    (empty) English Punkt model: sentences then split at every '.', '?' or '!' before whitespace,
    with no abbreviation list; tokens are the same except around abbreviations."""
    probe = [str(python), "-c", "import nltk.data; nltk.data.find('tokenizers/punkt_tab/english/')"]
    if subprocess.run(probe, env=env, capture_output=True).returncode == 0:
        return "installed"
    root = workdir / "nltk_data"
    english = root / "tokenizers" / "punkt_tab" / "english"
    english.mkdir(parents=True, exist_ok=True)
    for name in ("collocations.tab", "sent_starters.txt", "abbrev_types.txt", "ortho_context.tab"):
        (english / name).touch()
    env["NLTK_DATA"] = os.pathsep.join(p for p in (str(root), env.get("NLTK_DATA", "")) if p)
    return "empty (untrained) punkt_tab/english: NLTK's data is not installed"


def run(command: list[str], env: dict[str, str], log: Path) -> float:
    started = time.perf_counter()
    print("+ " + " ".join(command), flush=True)
    with log.open("a", encoding="utf-8") as out:
        out.write("+ " + " ".join(command) + "\n")
        out.flush()
        result = subprocess.run(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        tail = log.read_text(encoding="utf-8", errors="replace")[-3000:]
        raise SystemExit(f"command failed ({result.returncode}): {' '.join(command)}\n{tail}")
    return time.perf_counter() - started


def read_suggestions(path: Path, subject_of: dict[str, str]) -> list[list[str]]:
    ranked = []
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            results = json.loads(line)["results"]
            ordered = sorted(results, key=lambda r: -r["score"])  # index writes them best first
            ranked.append([subject_of[r["uri"]] for r in ordered[:TOP_K]])
    return ranked


def table(methods: dict[str, dict], without_turner: dict[str, dict]) -> str:
    lines = ["| method | P@5 | R@5 | F1@5 | NDCG@10 | F1@5 without Turner |", "| --- | --- | --- | --- | --- | --- |"]
    for name, m in sorted(methods.items(), key=lambda kv: -kv[1]["f1@5"]):
        other = without_turner.get(name, {}).get("f1@5", float("nan"))
        lines.append(
            f"| {name} | {m['p@5']:.3f} | {m['r@5']:.3f} | {m['f1@5']:.3f} | {m['ndcg@10']:.3f} | {other:.3f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=REPO / "var" / "annif", help="default %(default)s")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="Tate folder (default %(default)s)")
    parser.add_argument("--limit-train", type=int, default=None, help="first N train records (a smoke run)")
    parser.add_argument("--limit-dev", type=int, default=None, help="first N dev records")
    parser.add_argument(
        "--backend", nargs="+", choices=sorted(BACKENDS), default=["omikuji_bonsai"], help="default %(default)s"
    )
    parser.add_argument("--jobs", type=int, default=0, help="annif train --jobs (0: Annif chooses)")
    parser.add_argument(
        "--annif",
        type=Path,
        default=Path(sys.executable).parent / "annif",
        help="annif executable (default: beside this Python, %(default)s)",
    )
    args = parser.parse_args(argv)
    annif = args.annif.absolute()
    if not annif.exists():
        parser.error(f"{annif} not found: run `make compare-annif` or pass --annif")
    workdir = args.workdir.absolute()
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "annif.log"
    log.write_text("", encoding="utf-8")
    timings: dict[str, float] = {}
    metrics = load_metrics()

    # Corpora.
    started = time.perf_counter()
    subjects = [r["subject"] for r in read_jsonl(args.data / "subjects.jsonl.gz")]
    uri_of = write_vocabulary(subjects, workdir / "vocab.tsv")
    subject_of = {u: s for s, u in uri_of.items()}
    seen: set[str] = set()
    train_docs = 0
    with (workdir / "train.tsv").open("w", encoding="utf-8") as out:
        for record in read_jsonl(args.data / "tate_train.jsonl.gz", args.limit_train):
            uris = uri_field(record.get("subjects") or [], uri_of)
            seen.update(record.get("subjects") or [])
            if uris:  # an Annif training corpus holds subject-indexed documents
                out.write(f"{document_text(record)}\t{uris}\n")
                train_docs += 1
    gold: list[list[str]] = []
    turner: list[bool] = []
    with (workdir / "dev.tsv").open("w", encoding="utf-8") as out:
        for record in read_jsonl(args.data / "tate_dev.jsonl.gz", args.limit_dev):
            gold.append(list(record.get("subjects") or []))
            turner.append(record.get("artist") == TURNER)
            out.write(f"{document_text(record)}\t{uri_field(gold[-1], uri_of)}\n")
    timings["corpora_s"] = time.perf_counter() - started
    print(
        f"vocabulary {len(subjects)} subjects; train {train_docs} tagged documents; dev {len(gold)} documents "
        f"({sum(map(bool, gold))} tagged)",
        flush=True,
    )

    env = dict(os.environ)
    env["ANNIF_PROJECTS"] = str(workdir / "projects.cfg")
    env["ANNIF_DATADIR"] = str(workdir / "data")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    write_projects_cfg(workdir / "projects.cfg", args.backend)
    punkt = ensure_punkt(annif.parent / "python", workdir, env)
    print(f"NLTK punkt: {punkt}", flush=True)
    version = subprocess.run([str(annif), "--version"], env=env, capture_output=True, text=True).stdout.strip()

    cli = str(annif)
    timings["load_vocab_s"] = run(
        [cli, "load-vocab", VOCAB_ID, str(workdir / "vocab.tsv"), "--language", LANGUAGE, "--force"], env, log
    )
    methods: dict[str, dict] = {}
    without_turner: dict[str, dict] = {}
    for key in args.backend:
        pid = project_id(key)
        timings[f"{key}_train_s"] = run(
            [cli, "train", pid, str(workdir / "train.tsv"), "--jobs", str(args.jobs)], env, log
        )
        out = workdir / f"suggestions-{key}.jsonl"
        index = [cli, "index", pid, str(workdir / "dev.tsv"), "--limit", str(TOP_K), "--no-include-doc"]
        timings[f"{key}_suggest_s"] = run([*index, "--output", str(out), "--force"], env, log)
        ranked = read_suggestions(out, subject_of)
        if len(ranked) != len(gold):
            raise SystemExit(f"{out}: {len(ranked)} suggestion lists for {len(gold)} dev documents")
        name = f"annif_{key}"
        methods[name] = metrics.tagger_metrics(ranked, gold, seen, len(subjects))
        keep = [i for i, t in enumerate(turner) if not t]
        without_turner[name] = metrics.tagger_metrics(
            [ranked[i] for i in keep], [gold[i] for i in keep], seen, len(subjects)
        )
        print(f"{name}: {json.dumps(methods[name])}", flush=True)

    result = {
        "methods": methods,
        "without_turner": {"methods": without_turner},
        "settings": {
            "annif": version,
            "backends": {f"annif_{k}": BACKENDS[k] for k in args.backend},
            "data": str(args.data),
            "limit_train": args.limit_train,
            "limit_dev": args.limit_dev,
            "train_documents": train_docs,
            "dev_documents": len(gold),
            "nltk_punkt": punkt,
            "timings_s": {k: round(v, 1) for k, v in timings.items()},
        },
    }
    (workdir / "metrics.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {workdir / 'metrics.json'} (timings {result['settings']['timings_s']})\n")
    print(table(methods, without_turner))
    return 0


if __name__ == "__main__":
    sys.exit(main())
