"""Typed settings read from flags, then environment variables, then documented defaults.

Each service declares one dataclass (subclassing `ServerSettings`); every field carries a help
text in its metadata. `load_settings` turns the fields into command-line flags (`--max-batch-size`)
and environment variables (`VITRINE_EMBEDDER_MAX_BATCH_SIZE`), so every setting is documented in
`--help` and nowhere else is the environment read.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import types
import typing
from collections.abc import Sequence
from typing import Any, TypeVar

T = TypeVar("T", bound="ProcessSettings")


def setting(default: Any, help: str) -> Any:
    """A dataclass field with its help text."""
    return dataclasses.field(default=default, metadata={"help": help})


@dataclasses.dataclass(frozen=True)
class ProcessSettings:
    """Settings shared by every Vitrine server process (the gRPC services and the explorer)."""

    host: str = setting("127.0.0.1", "Address the gRPC server binds to (0.0.0.0 in containers).")
    port: int = setting(50051, "gRPC port.")
    metrics_port: int = setting(9101, "Port of the Prometheus /metrics HTTP endpoint (0 disables it).")
    log_level: str = setting("INFO", "Log level: DEBUG, INFO, WARNING, ERROR.")
    log_format: str = setting("json", "Log format: json (one object a line) or text.")
    access_log: bool = setting(True, "One INFO line per RPC or HTTP request (logger vitrine.access); false: none.")


@dataclasses.dataclass(frozen=True)
class ServerSettings(ProcessSettings):
    """Settings shared by every gRPC service."""

    max_message_mb: int = setting(32, "Largest gRPC message accepted or sent, in MiB.")
    max_concurrent_rpcs: int = setting(256, "RPCs served at once; more are refused with RESOURCE_EXHAUSTED.")
    grace_seconds: float = setting(10.0, "On SIGTERM, how long in-flight calls may take to finish.")
    max_connection_age_s: float = setting(
        0.0, "Close client connections after this many seconds: clients reconnect to new pods too (0: never)."
    )
    auth_token: str = setting(
        "", "When set, write RPCs need the metadata 'authorization: Bearer <token>' (UNAUTHENTICATED otherwise)."
    )
    tls_cert_file: str = setting("", "PEM certificate: serve TLS instead of plaintext (with tls_key_file).")
    tls_key_file: str = setting("", "PEM private key of tls_cert_file.")
    tls_ca_file: str = setting("", "PEM CA bundle trusted when calling other Vitrine services over TLS.")


def _field_type(cls: type, field: dataclasses.Field[Any]) -> type:
    hints = typing.get_type_hints(cls)
    kind = hints[field.name]
    # Optional[X] / X | None -> X
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
    return kind


def _parse(kind: type, raw: str, name: str) -> Any:
    if kind is bool:
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off", ""):
            return False
        raise ValueError(f"{name}: expected true or false, got {raw!r}")
    try:
        return kind(raw)
    except ValueError as exc:
        raise ValueError(f"{name}: expected {kind.__name__}, got {raw!r}") from exc


def env_name(prefix: str, field_name: str) -> str:
    return f"{prefix}{field_name.upper()}"


def load_settings(
    cls: type[T],
    env_prefix: str,
    argv: Sequence[str] | None = None,
    description: str = "",
    environ: typing.Mapping[str, str] | None = None,
) -> T:
    """Build `cls` from flags (highest priority), environment variables, then defaults."""
    environ = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawTextHelpFormatter)
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        kind = _field_type(cls, field)
        env = env_name(env_prefix, field.name)
        if env in environ:
            values[field.name] = _parse(kind, environ[env], env)
        flag = "--" + field.name.replace("_", "-")
        parser.add_argument(
            flag,
            dest=field.name,
            default=None,
            help=f"{field.metadata.get('help', '')}\n(env {env}, default {field.default!r})",
        )
    args = parser.parse_args(list(argv) if argv is not None else None)
    for field in dataclasses.fields(cls):
        raw = getattr(args, field.name)
        if raw is not None:
            values[field.name] = _parse(_field_type(cls, field), raw, "--" + field.name.replace("_", "-"))
    return cls(**values)


def describe(cls: type[ProcessSettings], env_prefix: str) -> list[tuple[str, str, str]]:
    """(environment variable, default, help) for every setting: used for docs."""
    return [
        (env_name(env_prefix, f.name), repr(f.default), f.metadata.get("help", "")) for f in dataclasses.fields(cls)
    ]
