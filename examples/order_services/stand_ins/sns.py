"""Stands in for the SNS topic on a laptop: it gets the publish call's parameters and answers as
SNS does."""

from typing import Any


def handler(request: dict[str, Any], context: Any) -> dict[str, Any]:
    return {"MessageId": "local-" + request["params"]["Subject"].replace(" ", "-").lower()}
