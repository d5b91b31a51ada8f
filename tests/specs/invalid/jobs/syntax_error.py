"""A job whose module Python cannot compile: the colon after the signature is missing."""

from typing import Any


def handler(event: dict[str, Any], context: object) -> dict[str, Any]
    return {"ok": True}
