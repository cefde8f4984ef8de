"""Input checks shared by the servicers. Each raises an INVALID_ARGUMENT `ServiceError` whose
message names the field and says what is allowed."""

from __future__ import annotations

from collections.abc import Sized

from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper

from vitrine.common.errors import invalid_argument


def require_text(value: str, field: str, max_chars: int) -> str:
    """A non-blank text of at most `max_chars` characters, returned stripped."""
    stripped = value.strip()
    if not stripped:
        raise invalid_argument(f"{field} is empty: give a non-blank text")
    if len(value) > max_chars:
        raise invalid_argument(f"{field} has {len(value)} characters: at most {max_chars} are allowed")
    return stripped


def require_count(items: Sized, field: str, max_items: int, min_items: int = 1) -> None:
    n = len(items)
    if n < min_items:
        raise invalid_argument(f"{field} is empty: give at least {min_items}")
    if n > max_items:
        raise invalid_argument(f"{field} has {n} items: at most {max_items} a request (split it)")


def bounded_int(value: int, field: str, default: int, max_value: int, min_value: int = 1) -> int:
    """`value`, or `default` when it is 0 (proto3's unset); out-of-range values are refused."""
    if value == 0:
        return default
    if value < min_value or value > max_value:
        raise invalid_argument(f"{field} is {value}: it must be between {min_value} and {max_value}")
    return value


def known_enum(value: int, enum: EnumTypeWrapper, field: str) -> int:
    """An enum value this build knows (proto3 keeps unknown numbers as plain integers, which
    would otherwise fall through to a default silently)."""
    if value not in enum.values():
        names = ", ".join(v.name for v in enum.DESCRIPTOR.values if not v.name.endswith("_UNSPECIFIED"))
        raise invalid_argument(f"{field} {value} is not a known value: give one of {names}")
    return value
