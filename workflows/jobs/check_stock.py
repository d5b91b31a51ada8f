"""Example job: decide whether an order can ship; ``reserve_items`` runs only when it can."""

from __future__ import annotations

from typing import Any


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    """``in_stock`` is what the ``when`` of ``reserve_items`` reads (``results.check_stock.in_stock``)."""
    items = event["input"].get("items", [])
    return {"in_stock": all(item.get("quantity", 1) <= 10 for item in items)}
