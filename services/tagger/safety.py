"""Sensitive suggestions that a curator must always confirm (REVIEW_REQUIRED with the reason).

Some tags are harmful when wrong: terms about people's identity, health or sexuality, and tags
that are grotesque in context (a war photograph's flares read as "firework"). The rules are data
(`rules/safety.json` by default, `VITRINE_TAGGER_SAFETY_RULES` to use a museum's own): tags under
a place in the hierarchy, groups of single tags, and context rules that flag a tag when the object's text or
existing tags mention certain words. Flagged suggestions are still returned, with the reason, so
that nothing is silently hidden; clients must never apply them automatically.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from vitrine.common.objects import object_text
from vitrine.common.vocabulary import Vocabulary
from vitrine.tagger.suggestions import Suggestion
from vitrine.tagger.text_features import words
from vitrine.v1 import common_pb2

log = logging.getLogger("vitrine.tagger.safety")

DEFAULT_RULES = Path(__file__).resolve().parent / "rules" / "safety.json"


@dataclass(frozen=True)
class ContextRule:
    tags: frozenset[str]
    stems: tuple[frozenset[str], ...]  # each mention as a set of stemmed words, all of which must appear
    reason: str


class SafetyRules:
    def __init__(self, by_tag: dict[str, str], context: list[ContextRule]) -> None:
        self.by_tag = by_tag  # tag -> reason, for tags always reviewed
        self.context = context

    @classmethod
    def load(cls, path: str | Path, vocabulary: Vocabulary) -> SafetyRules:
        """Read the rules; entries the vocabulary does not have are logged at start-up (a typo
        would otherwise be a rule that never fires), not fatal: one rules file serves several
        vocabularies."""
        raw = json.loads(Path(path).read_text())
        by_tag: dict[str, str] = {}
        for rule in raw.get("review_paths", []):
            prefix = rule["path"]
            matched = [
                t.subject for t in vocabulary if any(p == prefix or p.startswith(prefix + " > ") for p in t.paths)
            ]
            if not matched:
                log.warning("safety rule matches no tag", extra={"rules": str(path), "path": prefix})
            by_tag.update(dict.fromkeys(matched, rule["reason"]))
        for rule in raw.get("review_tags", []):
            _check_tags(path, rule["tags"], vocabulary)
            by_tag.update(dict.fromkeys(rule["tags"], rule["reason"]))
        context = []
        for rule in raw.get("context_rules", []):
            _check_tags(path, rule["tags"], vocabulary)
            stems = tuple(frozenset(words(m)) for m in rule["when_object_mentions"])
            context.append(ContextRule(frozenset(rule["tags"]), stems, rule["reason"]))
        return cls(by_tag, context)

    def review_reason(self, obj: common_pb2.CollectionObject, tag: str) -> str:
        """Why a curator must confirm this suggestion for this object ('' = no rule applies)."""
        reasons = [self.by_tag[tag]] if tag in self.by_tag else []
        rules = [r for r in self.context if tag in r.tags]
        if rules:
            mentioned = set(words(object_text(obj))) | {s for subject in obj.subjects for s in words(subject)}
            reasons += [r.reason for r in rules if any(stems <= mentioned for stems in r.stems)]
        return "; ".join(reasons)

    def flag(self, obj: common_pb2.CollectionObject, suggestions: list[Suggestion]) -> None:
        """Mark the object's suggestions that a curator must confirm, with the reason."""
        for suggestion in suggestions:
            reason = self.review_reason(obj, suggestion.tag.id)
            if reason:
                suggestion.review_required = True
                suggestion.review_reason = reason


def _check_tags(path: str | Path, tags: list[str], vocabulary: Vocabulary) -> None:
    unknown = [t for t in tags if t not in vocabulary]
    if unknown:
        log.warning("safety rule names tags the vocabulary lacks", extra={"rules": str(path), "tags": unknown})
