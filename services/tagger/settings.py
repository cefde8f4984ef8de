"""Every setting of the tagger (flags > VITRINE_TAGGER_* env > defaults)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from vitrine.common.settings import ServerSettings, setting

ENV_PREFIX = "VITRINE_TAGGER_"
_SHARED_TATE = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "tate"


@dataclasses.dataclass(frozen=True)
class TaggerSettings(ServerSettings):
    port: int = setting(50052, "gRPC port.")
    metrics_port: int = setting(9102, "Port of the Prometheus /metrics HTTP endpoint (0 disables it).")
    embedder_address: str = setting("127.0.0.1:50051", "host:port of the embedder service.")
    embedder_timeout_s: float = setting(60.0, "Deadline of each call to the embedder.")
    wait_for_embedder_s: float = setting(600.0, "How long start-up waits for the embedder to be SERVING.")
    text_model: str = setting("mpnet", "Embedder model for object and tag texts.")
    vocabulary: str = setting(
        str(_SHARED_TATE / "subjects.jsonl.gz"),
        "Subject vocabulary: JSON lines {subject, paths} or SKOS (.ttl, .rdf/.xml/.owl, .jsonld, .nt; plain or .gz).",
    )
    vocabulary_language: str = setting(
        "en", "Preferred languages of a SKOS vocabulary's labels, in order (e.g. 'fi,en'); then untagged labels."
    )
    model_dir: str = setting("var/tagger/models", "Folder of trained model versions (one sub-folder each).")
    model_version: str = setting("", "Version (sub-folder of model_dir) to serve; empty = the newest trained.")
    model_poll_s: float = setting(
        0.0,
        "Seconds between checks of model_dir for a newer complete version, loaded like ReloadModel without "
        "force (0 = off).",
    )
    max_text_chars: int = setting(20_000, "Largest total text of one object accepted by SuggestTags.")
    safety_rules: str = setting(
        str(Path(__file__).resolve().parent / "rules" / "safety.json"),
        "Sensitive-tag rules (JSON): suggestions they match are flagged review_required with the reason.",
    )
    audit_report: str = setting(
        "var/tagger/audit/audit.json", "The latest `vitrine-tagger audit` findings, which the Audit RPC serves."
    )
    feedback_db: str = setting(
        "var/tagger/feedback.sqlite3", "SQLite file holding curators' feedback (WAL journal, synchronous writes)."
    )
    feedback_database_url: str = setting(
        "", "PostgreSQL URL for curators' feedback (shared by every replica); when set, feedback_db is not used."
    )
