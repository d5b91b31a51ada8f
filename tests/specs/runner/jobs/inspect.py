"""Reports what the input says about the thing inspected; the conditions after it read this."""

from __future__ import annotations

from typing import Any


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    return {"broken": bool(event["input"].get("broken")), "size": event["input"].get("size", 0)}
