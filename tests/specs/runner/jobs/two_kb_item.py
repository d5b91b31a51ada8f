"""One item of a fan-out: its value, its index and about 2 KB of padding."""

from __future__ import annotations

from typing import Any


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    return {"value": event["item"], "index": event["index"], "padding": "x" * 2000}
