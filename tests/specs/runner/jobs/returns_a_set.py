"""Returns a set, which JSON has no form for: not a job output."""

from __future__ import annotations

from typing import Any


def handler(event: dict[str, Any], context: object) -> Any:
    return {"tags": {"not", "json"}}
