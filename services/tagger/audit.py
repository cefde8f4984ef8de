"""Data-quality audit of a tagged collection: what a curator should look at first.

Findings, each ranked (higher score = more worth a curator's time) and linked to object ids:
- untagged objects (ranked by how much metadata they have to tag from);
- objects with empty key fields (title, artist, date, medium);
- duplicate objects (same title, artist, date and medium after normalising case and spaces) and,
  with a model version, near-duplicates (metadata texts whose MPNet vectors nearly coincide);
- tags used once (ranked by how close they are to another used tag: a near twin is likely a
  variant spelling rather than a deliberate rare term);
- near-duplicate tags: the same words in another order, case or number ("man, old" / "old man",
  "boat" / "boats"), and tags whose MPNet vectors nearly coincide;
- with a trained model version: likely missing tags (confident suggestions an object lacks) and
  likely wrong tags (tags used often enough for the models to know them that none of them finds
  plausible for the object), with the models' explanation.

`vitrine-tagger audit` writes `audit.json` (the findings) and `audit.html` (a readable report with
plots of the tag frequency distribution, tags per object and field coverage); the `Audit` RPC
serves the latest `audit.json`.
"""

from __future__ import annotations

import html
import json
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from google.protobuf import json_format

from vitrine.common.vocabulary import Vocabulary
from vitrine.tagger.embeddings import EmbeddingCache, Encoders, embed_objects
from vitrine.tagger.model import TaggerModel
from vitrine.tagger.transport import explanation_message
from vitrine.v1 import tagger_pb2

if TYPE_CHECKING:  # the server imports this module and must not load the training-data readers
    from vitrine.tagger.data import Document

KEY_FIELDS = ("title", "artist", "date", "medium")
COVERAGE_FIELDS = ("title", "artist", "date", "medium", "classification", "description", "movements")
TAG_SIMILARITY = 0.92  # cosine of MPNet tag vectors above which two used tags are near-duplicates
MISSING_PROBABILITY = 0.9  # a suggestion this confident that the object lacks is likely missing
WRONG_PROBABILITY = 0.02  # an existing tag the combiner scores below this is likely wrong ...
WRONG_MIN_USES = 5  # ... if it is used often enough for the models to know it
OBJECT_SIMILARITY = 0.98  # cosine of two objects' metadata vectors above which they are near-duplicates
KIND = tagger_pb2.FindingKind


def finding(
    kind: int, score: float, objects: Sequence[str], tags: Sequence[str], message: str
) -> tagger_pb2.AuditFinding:
    return tagger_pb2.AuditFinding(
        kind=kind, score=round(float(score), 4), object_ids=list(objects), tags=list(tags), message=message
    )


def placeholder(title: str) -> bool:
    """Titles that stand for none: "[blank]", "Blank", "[title not known]", "Untitled"."""
    title = title.strip().lower()
    return (title.startswith("[") and title.endswith("]")) or title in ("untitled", "no title", "blank")


def untagged_and_empty(docs: Sequence[Document]) -> list[tagger_pb2.AuditFinding]:
    found = []
    for d in docs:
        filled = [f for f in COVERAGE_FIELDS if getattr(d.obj, f)]
        if not d.subjects:
            found.append(
                finding(
                    KIND.FINDING_KIND_UNTAGGED_OBJECT,
                    len(filled) / len(COVERAGE_FIELDS),
                    [d.id],
                    [],
                    f"{d.id} has no tags; it has {', '.join(filled) or 'no metadata'} to tag from",
                )
            )
        empty = [f for f in KEY_FIELDS if not str(getattr(d.obj, f)).strip()]
        if d.obj.title.strip() and placeholder(d.obj.title):
            empty.insert(0, f"title (placeholder {d.obj.title.strip()!r})")
        if empty:
            found.append(
                finding(
                    KIND.FINDING_KIND_EMPTY_KEY_FIELD,
                    len(empty) / len(KEY_FIELDS),
                    [d.id],
                    [],
                    f"{d.id} has an empty {', '.join(empty)}",
                )
            )
    return found


def duplicate_objects(docs: Sequence[Document]) -> list[tagger_pb2.AuditFinding]:
    groups: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for d in docs:
        key = tuple(" ".join(str(getattr(d.obj, f)).lower().split()) for f in KEY_FIELDS)
        if key[0] and not placeholder(key[0]):  # "[blank]" sketchbook pages are not duplicates
            groups[key].append(d.id)
    return [
        finding(
            KIND.FINDING_KIND_DUPLICATE_OBJECTS,
            len(ids),
            ids,
            [],
            f"{len(ids)} objects share title, artist, date and medium: {key[0]!r} by {key[1] or 'unknown'}",
        )
        for key, ids in groups.items()
        if len(ids) > 1
    ]


def tag_key(tag: str) -> str:
    """The same words regardless of order, case, punctuation and simple plurals."""
    words = re.findall(r"\w+", tag.lower())
    return " ".join(sorted(w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w for w in words))


def tag_findings(
    docs: Sequence[Document], vocabulary: Vocabulary, tag_vectors: np.ndarray | None
) -> list[tagger_pb2.AuditFinding]:
    uses = Counter(s for d in docs for s in d.subjects)
    carriers: dict[str, str] = {}
    for d in docs:
        for s in d.subjects:
            carriers.setdefault(s, d.id)
    used = sorted(uses)
    found = []
    by_key: dict[str, list[str]] = defaultdict(list)
    for t in used:
        by_key[tag_key(t)].append(t)
    for variants in by_key.values():
        if len(variants) > 1:
            found.append(
                finding(
                    KIND.FINDING_KIND_NEAR_DUPLICATE_TAGS,
                    1.0,
                    [carriers[t] for t in variants],
                    variants,
                    "the same words in another order, case or number: "
                    + " / ".join(f"{t!r} ({uses[t]}×)" for t in variants),
                )
            )
    closest: dict[str, tuple[str, float]] = {}  # used tag -> its nearest other used tag, cosine
    known = [t for t in used if t in vocabulary.index]  # tags outside the vocabulary have no vector
    reported: set[tuple[str, str]] = set()
    if tag_vectors is not None and len(known) > 1:
        vectors = tag_vectors[np.array([vocabulary.index[t] for t in known])]
        for start in range(0, len(known), 1024):
            sims = vectors[start : start + 1024] @ vectors.T
            sims[np.arange(sims.shape[0]), start + np.arange(sims.shape[0])] = -1.0
            for i, j in enumerate(sims.argmax(axis=1)):
                a, b, similarity = known[start + i], known[j], float(sims[i, j])
                closest[a] = (b, similarity)
                pair = (min(a, b), max(a, b))
                if similarity >= TAG_SIMILARITY and tag_key(a) != tag_key(b) and pair not in reported:
                    reported.add(pair)
                    found.append(
                        finding(
                            KIND.FINDING_KIND_NEAR_DUPLICATE_TAGS,
                            similarity,
                            [carriers[a], carriers[b]],
                            [a, b],
                            f"{a!r} ({uses[a]}×) and {b!r} ({uses[b]}×) mean nearly the same "
                            f"(MPNet cosine {similarity:.2f})",
                        )
                    )
    for t in used:
        if uses[t] == 1:
            twin, similarity = closest.get(t, ("", 0.0))
            note = f"; closest used tag {twin!r} (cosine {similarity:.2f})" if twin else ""
            found.append(
                finding(
                    KIND.FINDING_KIND_TAG_USED_ONCE,
                    max(similarity, 0.0),
                    [carriers[t]],
                    [t],
                    f"{t!r} is used once{note}",
                )
            )
    return found


def model_findings(
    docs: Sequence[Document],
    model: TaggerModel,
    encoders: Encoders,
    cache: EmbeddingCache | None,
    missing_above: float = MISSING_PROBABILITY,
) -> list[tagger_pb2.AuditFinding]:
    """Likely missing and likely wrong tags, by the model version's combiner."""
    found = []
    index = model.vocabulary.index
    tagged = [d for d in docs if d.subjects]
    vectors: list[np.ndarray] = []
    for start in range(0, len(tagged), 256):
        part = tagged[start : start + 256]
        objects = [d.obj for d in part]
        dimension = model.context.tag_vectors.shape[1]
        inputs = model.inputs(objects, embed_objects(objects, model.text_model, dimension, encoders, cache, False))
        ranked = model.rank(inputs)
        confident = model.suggest(inputs, 5, missing_above, [set(d.subjects) for d in part], ranked)
        for doc, (d, suggestions) in enumerate(zip(part, confident, strict=True)):
            for s in suggestions:
                if not s.already_present:
                    message = f"{d.id} lacks {s.tag.id!r}, which the models give {s.score:.0%}"
                    item = finding(KIND.FINDING_KIND_LIKELY_MISSING_TAG, s.score, [d.id], [s.tag.id], message)
                    if s.explanation is not None:
                        item.explanation.CopyFrom(explanation_message(s.explanation))
                    found.append(item)
            order, probabilities = ranked.ranking(doc)
            scored = {
                int(ranked.candidates.tags[p]): (int(p), float(q)) for p, q in zip(order, probabilities, strict=True)
            }
            for subject in d.subjects:
                column = index.get(subject)
                if column is None or model.tag_counts[column] < WRONG_MIN_USES:
                    continue
                position, probability = scored.get(column, (-1, 0.0))
                if probability >= WRONG_PROBABILITY:
                    continue
                how = f"scored {probability:.1%}" if position >= 0 else "proposed by no model"
                item = finding(
                    KIND.FINDING_KIND_LIKELY_WRONG_TAG,
                    1.0 - probability,
                    [d.id],
                    [subject],
                    f"{d.id} carries {subject!r} ({int(model.tag_counts[column])} uses in training), "
                    f"but it is {how} for this object",
                )
                # What each base model said: its score and rank for the tag (0 = not in its top list).
                for name in ranked.candidates.scores:
                    item.explanation.components.add(
                        component=name,
                        score=float(ranked.candidates.scores[name][position]) if position >= 0 else 0.0,
                        rank=int(ranked.candidates.ranks[name][position]) if position >= 0 else 0,
                    )
                item.explanation.tag_paths.extend(model.vocabulary.terms[column].paths)
                item.explanation.summary = (
                    f"no base model ranks {subject!r} among its top {model.candidates_per_model} for this object"
                    if position < 0
                    else f"the combiner gives {subject!r} {probability:.1%} from the base models' scores"
                )
                found.append(item)
        vectors.append(inputs.text_vectors)
    return found + near_duplicate_objects(tagged, np.vstack(vectors) if vectors else np.zeros((0, 0)))


def near_duplicate_objects(docs: Sequence[Document], vectors: np.ndarray) -> list[tagger_pb2.AuditFinding]:
    """Pairs of objects whose metadata texts nearly coincide (MPNet cosine ≥ 0.98) without being
    identical in their key fields (those are the exact duplicates above)."""
    found = []
    for start in range(0, len(docs), 1024):
        sims = vectors[start : start + 1024] @ vectors.T
        for i, j in zip(*np.nonzero(sims >= OBJECT_SIMILARITY), strict=True):
            a, b = docs[start + i], docs[j]
            if start + i < j and a.text != b.text and not (placeholder(a.obj.title) or placeholder(b.obj.title)):
                found.append(
                    finding(
                        KIND.FINDING_KIND_DUPLICATE_OBJECTS,
                        float(sims[i, j]),
                        [a.id, b.id],
                        [],
                        f"{a.id} and {b.id} have nearly the same metadata (MPNet cosine {sims[i, j]:.3f}): "
                        f"{a.obj.title!r} / {b.obj.title!r}",
                    )
                )
    return found


def audit(
    docs: Sequence[Document],
    vocabulary: Vocabulary,
    model: TaggerModel | None = None,
    encoders: Encoders | None = None,
    cache: EmbeddingCache | None = None,
    missing_above: float = MISSING_PROBABILITY,
) -> list[tagger_pb2.AuditFinding]:
    found = untagged_and_empty(docs) + duplicate_objects(docs)
    found += tag_findings(docs, vocabulary, model.context.tag_vectors if model else None)
    if model is not None and encoders is not None:
        found += model_findings(docs, model, encoders, cache, missing_above)
    return sorted(found, key=lambda f: (f.kind, -f.score))


def response(findings: Sequence[tagger_pb2.AuditFinding], limit_per_kind: int) -> tagger_pb2.AuditResponse:
    """The top findings of each kind (they come sorted), with every kind's full count."""
    answer = tagger_pb2.AuditResponse()
    for item in findings:
        name = KIND.Name(item.kind)
        answer.counts_by_kind[name] = answer.counts_by_kind[name] + 1
        if answer.counts_by_kind[name] <= limit_per_kind:
            answer.findings.append(item)
    return answer


def statistics(docs: Sequence[Document]) -> dict[str, Any]:
    uses = Counter(s for d in docs for s in d.subjects)
    per_object = Counter(min(len(d.subjects), 20) for d in docs)
    bins = [1, 2, 3, 5, 10, 20, 50, 100, 1000, 10**9]
    frequency = Counter(next(b for b in bins if n <= b) for n in uses.values())
    return {
        "objects": len(docs),
        "tags_used": len(uses),
        "tag_uses_histogram": {("≤" if b < 10**9 else ">") + str(b if b < 10**9 else 1000): frequency[b] for b in bins},
        "tags_per_object": {str(k) + ("+" if k == 20 else ""): per_object[k] for k in sorted(per_object)},
        "field_coverage": {f: sum(bool(getattr(d.obj, f)) for d in docs) / max(len(docs), 1) for f in COVERAGE_FIELDS},
    }


def write_report(
    findings: Sequence[tagger_pb2.AuditFinding], stats: dict[str, Any], out: Path, shown: int = 25
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    summary = response(findings, shown)
    document = {
        "statistics": stats,
        "counts_by_kind": dict(summary.counts_by_kind),
        "findings": [
            json_format.MessageToDict(f, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
            for f in findings
        ],
    }
    (out / "audit.json").write_text(json.dumps(document, ensure_ascii=False, indent=1))
    parts = [
        "<!doctype html><meta charset='utf-8'><title>Vitrine data-quality audit</title>",
        "<style>body{font:14px system-ui;margin:2em;max-width:70em}td,th{padding:2px 8px;text-align:left;"
        "vertical-align:top}svg text{font:11px system-ui}</style>",
        f"<h1>Data-quality audit</h1><p>{stats['objects']} objects, {stats['tags_used']} distinct tags.</p>",
        "<h2>Tag frequency (tags by number of uses)</h2>",
        bar_chart(stats["tag_uses_histogram"]),
        "<h2>Tags per object</h2>",
        bar_chart(stats["tags_per_object"]),
        "<h2>Coverage by field (share of objects with it)</h2>",
        bar_chart({k: round(v, 3) for k, v in stats["field_coverage"].items()}),
        "<h2>Findings</h2><table><tr><th>kind</th><th>count</th></tr>",
        *[f"<tr><td>{html.escape(k)}</td><td>{n}</td></tr>" for k, n in summary.counts_by_kind.items()],
        "</table>",
    ]
    for name, count in summary.counts_by_kind.items():
        parts.append(f"<h3>{html.escape(name)} — top {min(count, shown)} of {count}</h3><table>")
        parts.append("<tr><th>score</th><th>objects</th><th>tags</th><th>why</th></tr>")
        for f in summary.findings:
            if KIND.Name(f.kind) == name:
                parts.append(
                    f"<tr><td>{f.score:.2f}</td><td>{html.escape(', '.join(f.object_ids[:5]))}</td>"
                    f"<td>{html.escape(' / '.join(f.tags))}</td><td>{html.escape(f.message)}"
                    + (f"<br><small>{html.escape(f.explanation.summary)}</small>" if f.explanation.summary else "")
                    + "</td></tr>"
                )
        parts.append("</table>")
    (out / "audit.html").write_text("\n".join(parts) + "\n")


def bar_chart(values: dict[str, float], width: int = 520, row: int = 18) -> str:
    """A horizontal bar chart as inline SVG (no plotting library needed to read the report)."""
    top = max(values.values(), default=0) or 1
    bars = []
    for i, (label, value) in enumerate(values.items()):
        length = (width - 160) * value / top
        y = i * row
        bars.append(
            f"<text x='0' y='{y + 13}'>{html.escape(str(label))}</text>"
            f"<rect x='80' y='{y + 3}' width='{length:.1f}' height='{row - 6}' fill='#4a78a8'/>"
            f"<text x='{84 + length:.1f}' y='{y + 13}'>{value}</text>"
        )
    return f"<svg width='{width}' height='{row * len(values)}'>{''.join(bars)}</svg>"


def load_report(path: Path) -> list[tagger_pb2.AuditFinding]:
    document = json.loads(path.read_text())
    return [json_format.ParseDict(f, tagger_pb2.AuditFinding()) for f in document["findings"]]
