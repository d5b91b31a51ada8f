"""The renewal's price, from the run's input."""

from typing import Any


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {"customer": event["input"]["customer"], "amount": event["input"]["amount"]}
