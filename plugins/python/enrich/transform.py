"""The enrich plugin's logic, free of component bindings so that it runs (and
is tested) under plain CPython too.

A JSON-object payload goes through, in order:

1. ``drop``: these top-level fields are removed;
2. ``rename``: ``{old = "new"}`` moves a field to a new name, in place
   (replacing a field that already had the new name);
3. ``add_fields``: ``{name = value}`` sets fields to fixed values;
4. ``received_at``: this field is set to the host's clock, Unix ms;
5. ``user_field``: this field is set to the publisher's user name,
   normalized (NFKC, trimmed, case-folded); absent for server publishes.

Server fields come last, so a client cannot forge them. Payloads that are
not a JSON object (other JSON, text, binary) pass unchanged, as does an
object the steps leave as it was.
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

KEYS = ("add_fields", "rename", "drop", "received_at", "user_field")


class ConfigError(ValueError):
    """An invalid plugin config; the message says what is wrong."""


@dataclass(frozen=True)
class Config:
    add_fields: Dict[str, Any] = field(default_factory=dict)
    rename: Dict[str, str] = field(default_factory=dict)
    drop: List[str] = field(default_factory=list)
    received_at: Optional[str] = None
    user_field: Optional[str] = None

    @property
    def needs_clock(self) -> bool:
        return self.received_at is not None


def _field_name(value: Any, what: str) -> str:
    if not isinstance(value, str) or value == "":
        raise ConfigError(f"{what} must be a non-empty string, not {json.dumps(value)}")
    return value


def parse_config(text: str) -> Config:
    """Parses the plugin's TOML config table, given as JSON text."""
    try:
        raw = json.loads(text) if text.strip() else {}
    except ValueError as e:
        raise ConfigError(f"config is not valid JSON: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError("config must be a table")
    unknown = sorted(set(raw) - set(KEYS))
    if unknown:
        raise ConfigError(f"unknown config key `{unknown[0]}` (expected one of: {', '.join(KEYS)})")

    add_fields = raw.get("add_fields", {})
    if not isinstance(add_fields, dict):
        raise ConfigError("`add_fields` must be a table")
    for name in add_fields:
        _field_name(name, "an `add_fields` name")

    rename = raw.get("rename", {})
    if not isinstance(rename, dict):
        raise ConfigError("`rename` must be a table of old = \"new\"")
    for old, new in rename.items():
        _field_name(old, "a `rename` key")
        _field_name(new, f"`rename.{old}`")

    drop = raw.get("drop", [])
    if not isinstance(drop, list):
        raise ConfigError("`drop` must be a list of field names")
    for name in drop:
        _field_name(name, "a `drop` entry")

    received_at = raw.get("received_at")
    if received_at is not None:
        _field_name(received_at, "`received_at`")
    user_field = raw.get("user_field")
    if user_field is not None:
        _field_name(user_field, "`user_field`")

    return Config(
        add_fields=dict(add_fields),
        rename=dict(rename),
        drop=list(drop),
        received_at=received_at,
        user_field=user_field,
    )


def normalize_user(user: str) -> str:
    """A comparable form of a user name: NFKC, trimmed, case-folded."""
    return unicodedata.normalize("NFKC", user).strip().casefold()


def transform(
    data: bytes,
    config: Config,
    now_ms: Optional[int] = None,
    user: Optional[str] = None,
) -> Optional[bytes]:
    """Returns the new payload, or None when the message passes unchanged.

    ``now_ms`` is the host time (used when ``received_at`` is set) and
    ``user`` the publisher's user (None for server-side publishes).
    """
    try:
        obj = json.loads(data)
    except ValueError:
        return None
    if not isinstance(obj, dict):
        return None

    # A renamed field replaces a field already called by its new name.
    targets = {new for old, new in config.rename.items() if old in obj and old not in config.drop}
    out: Dict[str, Any] = {}
    for key, value in obj.items():
        if key in config.drop:
            continue
        if key in config.rename:
            out[config.rename[key]] = value
        elif key not in targets:
            out[key] = value
    out.update(config.add_fields)
    if config.received_at is not None and now_ms is not None:
        out[config.received_at] = now_ms
    if config.user_field is not None:
        if user:
            out[config.user_field] = normalize_user(user)
        else:
            out.pop(config.user_field, None)

    if out == obj and list(out) == list(obj):
        return None
    return json.dumps(out, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
