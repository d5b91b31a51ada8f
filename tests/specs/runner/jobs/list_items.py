"""Lists the items to process: ``input.count`` numbers (1,000 by default)."""

from __future__ import annotations

from typing import Any


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    return {"items": list(range(event["input"].get("count", 1000)))}
