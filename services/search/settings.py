"""Settings of the search service (flags, then VITRINE_SEARCH_* environment variables)."""

from __future__ import annotations

import dataclasses
import math
import os

from vitrine.common.settings import ServerSettings, setting

ENV_PREFIX = "VITRINE_SEARCH_"
DEFAULT_ADDRESS = "127.0.0.1:50053"


@dataclasses.dataclass(frozen=True)
class SearchSettings(ServerSettings):
    port: int = setting(50053, "gRPC port.")
    metrics_port: int = setting(9103, "Port of the Prometheus /metrics HTTP endpoint (0 disables it).")
    embedder_address: str = setting("127.0.0.1:50051", "Address of the embedder service.")
    embedder_wait_s: float = setting(
        600.0, "At start-up, how long to wait for the embedder to be SERVING before giving up."
    )
    data_dir: str = setting("var/search", "Folder of the embedded vector store (one process per folder).")
    collection: str = setting("vitrine", "Name of the collection (a sub-folder of data_dir for the embedded store).")
    snapshot_dir: str = setting(
        "", "Folder of the embedded store's snapshots (CreateSnapshot, see Backups). Empty: <data_dir>/snapshots."
    )
    qdrant_url: str = setting(
        "", "URL of a Qdrant server (http://host:6333). Empty: use the embedded engine in data_dir."
    )
    qdrant_api_key: str = setting("", "API key of the Qdrant server, if it needs one.")
    text_model: str = setting("mpnet", "Embedder model for metadata text and text queries.")
    image_model: str = setting(
        "", "Embedder model for images. Empty: clip when the embedder has it, else efficientnet-lite0."
    )
    tagger_address: str = setting(
        "",
        "Address of the tagger service: at ingest each object's best machine tags are indexed for search "
        "(signal 'tags'). Empty: no machine tags.",
    )
    machine_tags: int = setting(30, "Machine tags indexed per object (the tagger's best suggestions, 1 to 100).")
    machine_tag_min_score: float = setting(
        0.02, "Lowest calibrated tagger score a machine tag needs to be indexed (above 0, at most 1)."
    )
    vocabulary: str = setting(
        "",
        "Subject vocabulary (as the tagger's: JSON lines or SKOS, plain or .gz): the 'tags' signal also indexes "
        "every label of a tag's term (altLabels, other languages), and tags given by URI or label are resolved. "
        "Empty: tags are indexed by their own words only.",
    )
    vocabulary_language: str = setting(
        "en", "Preferred languages of a SKOS vocabulary's labels, in order (e.g. 'fi,en'), as the tagger's."
    )
    index_min_new_objects: int = setting(
        20_000,
        "Embedded store: objects added since the last HNSW build that start a new build (in a child process, "
        "swapped in when done) once writes pause; 0 never builds (queries scan).",
    )
    index_idle_s: float = setting(30.0, "Embedded store: seconds without writes before an index build starts.")
    max_objects_per_upsert: int = setting(256, "Most objects one UpsertObjects request may carry.")
    max_image_mb: float = setting(20.0, "Largest image (in MiB) UpsertObjects embeds; a larger one is refused.")
    max_query_chars: int = setting(1000, "Longest query text accepted, in characters.")
    default_page_size: int = setting(12, "Hits a page holds when the request does not say.")
    max_page_size: int = setting(100, "Most hits one page may hold.")
    max_offset: int = setting(10_000, "Deepest result a page may start at (deep paging costs a full scan).")
    candidates: int = setting(
        100, "Candidates each signal brings to the fusion of one Search (more when a page starts deeper)."
    )
    weight_text: float = setting(1.0, "Fusion weight of MPNet text-to-metadata matches (Search signal_weights 'text').")
    weight_keyword: float = setting(1.0, "Fusion weight of keyword matches (Search signal_weights 'keyword').")
    weight_image: float = setting(1.0, "Fusion weight of CLIP text-to-image matches (Search signal_weights 'image').")
    weight_tags: float = setting(
        1.5, "Fusion weight of subject-tag matches, curators' and machine tags (Search signal_weights 'tags')."
    )
    fusion_k: float = setting(10.0, "Reciprocal rank fusion constant: a hit at rank r adds weight / (k + r).")
    query_embed_timeout_s: float = setting(
        5.0, "How long Search waits for the embedder before answering with keyword and tag matches only."
    )

    @property
    def snapshot_folder(self) -> str:
        return self.snapshot_dir or os.path.join(self.data_dir, "snapshots")

    def __post_init__(self) -> None:
        if not self.qdrant_url and os.path.abspath(self.snapshot_folder) == os.path.abspath(
            os.path.join(self.data_dir, self.collection)
        ):
            raise ValueError(
                f"{ENV_PREFIX}COLLECTION {self.collection!r} is the snapshot folder's name: "
                f"set {ENV_PREFIX}SNAPSHOT_DIR to another folder"
            )
        weights = {
            "weight_text": self.weight_text,
            "weight_keyword": self.weight_keyword,
            "weight_image": self.weight_image,
            "weight_tags": self.weight_tags,
        }
        for name, value in weights.items():
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{ENV_PREFIX}{name.upper()} must be a number of 0 or more, not {value}")
        if not any(weights.values()):
            raise ValueError(f"the fusion weights ({ENV_PREFIX}WEIGHT_*) are all 0: at least one must be positive")
        if not 1 <= self.machine_tags <= 100 or not 0 < self.machine_tag_min_score <= 1:
            raise ValueError(
                f"{ENV_PREFIX}MACHINE_TAGS must be 1 to 100 and {ENV_PREFIX}MACHINE_TAG_MIN_SCORE above 0, at most 1"
            )
        if not self.vocabulary_language.replace(",", "").strip():
            raise ValueError(
                f"{ENV_PREFIX}VOCABULARY_LANGUAGE is empty: give one or more languages, such as 'en' or 'fi,en'"
            )
        if self.index_min_new_objects < 0 or self.index_idle_s < 0:
            raise ValueError(f"{ENV_PREFIX}INDEX_MIN_NEW_OBJECTS and {ENV_PREFIX}INDEX_IDLE_S must be 0 or more")
        if self.candidates < 1 or not self.fusion_k > 0 or not self.query_embed_timeout_s > 0:
            raise ValueError(
                f"{ENV_PREFIX}CANDIDATES must be 1 or more, {ENV_PREFIX}FUSION_K and "
                f"{ENV_PREFIX}QUERY_EMBED_TIMEOUT_S more than 0"
            )
