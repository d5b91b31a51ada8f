"""Returns a list, which is not a job output."""

from __future__ import annotations

from typing import Any


def handler(event: dict[str, Any], context: object) -> Any:
    return ["not", "a", "dict"]
