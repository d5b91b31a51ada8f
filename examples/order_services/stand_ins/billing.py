"""Stands in for the team's Node.js billing function on a laptop: it gets what the function gets
(the job's payload) and answers as it does; a card ending in 0000 is declined, as the real
function's CardDeclined error."""

from typing import Any


class CardDeclined(Exception):
    pass


def handler(payload: dict[str, Any], context: Any) -> dict[str, Any]:
    if payload["customer"].endswith("0000"):
        raise CardDeclined(f"card of {payload['customer']} declined")
    return {"receipt": f"r-{payload['order']}", "charged": payload["amount"]}
