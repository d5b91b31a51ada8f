"""Tells the customer their renewal is coming (a real one would call the mail service)."""

from typing import Any


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    quote = event["results"]["quote"]
    return {"to": quote["customer"], "text": f"Your renewal of {quote['amount']:.2f} is due tomorrow."}
