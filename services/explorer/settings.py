"""Settings of the explorer (flags, then VITRINE_EXPLORER_* environment variables)."""

from __future__ import annotations

import dataclasses

from vitrine.common.settings import ProcessSettings, setting

ENV_PREFIX = "VITRINE_EXPLORER_"


@dataclasses.dataclass(frozen=True)
class ExplorerSettings(ProcessSettings):
    host: str = setting("127.0.0.1", "Address the web server binds to (0.0.0.0 in containers).")
    port: int = setting(8080, "HTTP port of the page and its JSON API.")
    metrics_port: int = setting(9104, "Port of the Prometheus /metrics HTTP endpoint (0 disables it).")
    search_address: str = setting("127.0.0.1:50053", "Address of the search service.")
    tagger_address: str = setting("127.0.0.1:50052", "Address of the tagger service (empty: no tag suggestions).")
    rpc_timeout_s: float = setting(10.0, "Deadline of every call to the search and tagger services, in seconds.")
    write_token: str = setting(
        "", "Bearer token sent with tag feedback, when the tagger requires one for write RPCs (its AUTH_TOKEN)."
    )
    tls_ca_file: str = setting("", "PEM CA bundle: call the search and tagger services over TLS.")
    image_roots: str = setting(
        "", "Comma-separated folders that images given as file paths may be served from (empty: none)."
    )
    max_image_mb: float = setting(20.0, "Largest image file served, in MiB.")
    image_cache_s: int = setting(86400, "How long browsers may cache an image (Cache-Control max-age, seconds).")
    grace_seconds: float = setting(10.0, "On SIGTERM, how long in-flight requests may take to finish.")
