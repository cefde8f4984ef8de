"""Small, real tagger training sets cut from the shared Tate data, and a trained model on them.

Seeded samples of the training and dev splits, and a vocabulary of the tags those use plus
some the training slice never uses (so the semantic model has unseen tags to find) — small
enough that MiniLM embeds everything in seconds. The Tate records have no images; for the image
path, `attach_images` gives objects a painting chosen by one of their tags, so that an image
carries real evidence about tags (what the image models have to learn from).
"""

from __future__ import annotations

import gzip
import json
import random
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import ROOT, SHARED_DATA

TATE = SHARED_DATA / "tate"
PAINTING_FILES = sorted((SHARED_DATA / "paintings" / "images").glob("*.jpg"))


@dataclass
class TaggerSlice:
    train: Path
    dev: Path
    vocabulary: Path


def write_slice(
    directory: Path, train_size: int = 1500, dev_size: int = 300, extra_tags: int = 300, seed: int = 7
) -> TaggerSlice:
    directory.mkdir(parents=True, exist_ok=True)
    with gzip.open(TATE / "tate_train.jsonl.gz", "rt") as lines:
        train = [line for line in lines]
    train = random.Random(seed).sample(train, train_size)
    # Both parts sampled at random: the files are sorted by accession number, so their heads are
    # a few artists' works (the first 300 dev objects hold 3% Turner against 55% overall).
    with gzip.open(TATE / "tate_dev.jsonl.gz", "rt") as lines:
        dev = random.Random(seed).sample(list(lines), dev_size)
    used = {s for line in train + dev for s in json.loads(line)["subjects"]}
    with gzip.open(TATE / "subjects.jsonl.gz", "rt") as lines:
        terms = [json.loads(line) for line in lines]
    others = [t for t in terms if t["subject"] not in used]
    keep = [t for t in terms if t["subject"] in used] + random.Random(seed).sample(others, extra_tags)
    result = TaggerSlice(directory / "train.jsonl.gz", directory / "dev.jsonl.gz", directory / "subjects.jsonl.gz")
    for path, rows in ((result.train, train), (result.dev, dev)):
        with gzip.open(path, "wt") as out:
            out.writelines(rows)
    with gzip.open(result.vocabulary, "wt") as out:
        out.writelines(json.dumps(t) + "\n" for t in keep)
    return result


def tagger_cli(command: str, data: TaggerSlice, *args: str) -> list[str]:
    """A `vitrine-tagger` command line on the slice's vocabulary."""
    return [sys.executable, "-m", "vitrine.tagger.cli", command, "--vocabulary", str(data.vocabulary), *args]


def train_command(data: TaggerSlice, out: Path, cache: Path, *extra: str) -> list[str]:
    """`vitrine-tagger train` with MiniLM on the slice's training part."""
    return tagger_cli(
        "train", data, "--data", str(data.train), "--text-model", "minilm", "--out", str(out),
        "--threads", "2", "--cache", str(cache), *extra,
    )  # fmt: skip


def attach_images(data: TaggerSlice, tags: int = 12) -> dict[str, Path]:
    """Give every object that carries one of the slice's `tags` most frequent tags the painting
    of its first such tag (as an `image_path`); the others stay without an image. Answers
    tag -> painting file."""
    rows: dict[Path, list[dict]] = {}
    for path in (data.train, data.dev):
        with gzip.open(path, "rt") as lines:
            rows[path] = [json.loads(line) for line in lines]
    counts: dict[str, int] = {}
    for row in rows[data.train]:
        for subject in row["subjects"]:
            counts[subject] = counts.get(subject, 0) + 1
    frequent = sorted(counts, key=lambda s: (-counts[s], s))[:tags]
    paintings = dict(zip(frequent, PAINTING_FILES, strict=False))
    for path, records in rows.items():
        with gzip.open(path, "wt") as out:
            for row in records:
                tag = next((s for s in frequent if s in row["subjects"]), None)
                if tag:
                    row["image_path"] = str(paintings[tag])
                out.write(json.dumps(row) + "\n")
    return paintings


def train_small_model(
    data: TaggerSlice, out: Path, embedder: str = "", cache: Path | None = None, image_model: str = ""
) -> Path:
    """`vitrine-tagger train` on the slice, evaluated on its dev part; the version's folder."""
    command = train_command(data, out, cache or out.parent / "embeddings.sqlite3", "--eval-data", str(data.dev))
    if embedder:
        command += ["--embedder", embedder]
    if image_model:
        command += ["--image-model", image_model]
    subprocess.run(command, check=True, cwd=ROOT, capture_output=True, text=True)
    return out
