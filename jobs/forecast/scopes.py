"""A scope: the part of the ledger a budget, a forecast or a batch saving is about.

A scope maps ledger dimensions (`model`, `mode`, `project`, `feature`, `api_key`, `tag`) to the
value wanted; the empty scope is all spend. A `tag` matches `key=value` or the value alone."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol


class Dimensions(Protocol):
    model: str
    mode: str
    project: str
    feature: str
    api_key: str
    tags: str


def in_scope(scope: Mapping[str, str], row: Dimensions) -> bool:
    """Whether a ledger row (or anything with its dimensions) falls inside `scope`."""
    for key, wanted in scope.items():
        if key == "tag":
            tags = row.tags.split(",") if row.tags else []
            if wanted not in tags and not any(t.partition("=")[2] == wanted for t in tags):
                return False
        elif getattr(row, key) != wanted:
            return False
    return True


def describe(scope: Mapping[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(scope.items())) or "all spend"
