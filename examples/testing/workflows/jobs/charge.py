"""Charges the renewal, less the discount a manager approved (``{"percent": 10}``). A real one
would call the payment API, which fails now and then with a ConnectionError (the spec retries
those)."""

from typing import Any


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    results = event["results"]
    discount = results.get("discount") or {}  # absent when it was rejected or timed out
    amount = results["quote"]["amount"] * (100 - discount.get("percent", 0)) / 100
    return {"charged": round(amount, 2)}
