"""JSON as every door reads it: like `json.loads`, but an object that names a key twice is refused.

The standard parser keeps the last of duplicate keys, so `{"token": "tok_declined", "token": "tok_visa"}`
would place a card order the sender may have meant to decline. Which value was meant is anybody's guess
(RFC 8259 leaves it open), so the document is refused, naming where.
"""

from __future__ import annotations

import json
from typing import Any


class DuplicateKeys(ValueError):
    """The document names a key twice in one object; `paths` says where (`payment.token`, `lines.0.sku`)."""

    def __init__(self, paths: list[str]) -> None:
        self.paths = paths
        super().__init__("duplicate keys: " + ", ".join(paths))

    @property
    def problems(self) -> list[str]:
        return [f"{path}: given more than once (which one was meant is unclear)" for path in self.paths]


class _WithDuplicates(dict[str, Any]):
    """An object that named keys twice, and which ones (kept while parsing, to name their paths)."""

    duplicates: list[str]


def loads(text: str | bytes) -> Any:
    """Parse JSON; raises DuplicateKeys, or what `json.loads` raises."""
    found = False

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal found
        obj = dict(items)
        if len(obj) == len(items):
            return obj
        found = True
        with_duplicates = _WithDuplicates(obj)
        seen: set[str] = set()
        with_duplicates.duplicates = []
        for key, _ in items:
            if key in seen:
                with_duplicates.duplicates.append(key)
            seen.add(key)
        return with_duplicates

    data = json.loads(text, object_pairs_hook=pairs)
    if found:
        raise DuplicateKeys(list(dict.fromkeys(_paths(data, ""))))
    return data


def _paths(value: Any, prefix: str) -> list[str]:
    found: list[str] = []
    if isinstance(value, dict):
        if isinstance(value, _WithDuplicates):
            found += [f"{prefix}{key}" for key in value.duplicates]
        for key, item in value.items():
            found += _paths(item, f"{prefix}{key}.")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, f"{prefix}{index}.")
    return found
