"""Refuses an order nobody should charge: the one piece of new code in this workflow."""

from typing import Any


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    order = event["input"]
    if order["total"] > 10_000:
        raise ValueError(f"order {order['order_id']} is over the 10,000 limit: review it by hand")
    return {"checked": order["order_id"]}
