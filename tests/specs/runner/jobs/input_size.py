"""Says what input it got."""

from __future__ import annotations

from typing import Any


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    return {"input": event["input"], "keys": len(event["input"])}
