"""Sums what the items of the fan-out before it returned, in the order of their indexes."""

from __future__ import annotations

from typing import Any


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    outputs = event["results"]["process_item"]
    return {
        "sum": sum(output["value"] for output in outputs),
        "count": len(outputs),
        "in_order": [output["index"] for output in outputs] == list(range(len(outputs))),
        "bytes": sum(len(output["padding"]) for output in outputs),
    }
