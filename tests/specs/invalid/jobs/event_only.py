"""A handler that takes the event only; Lambda passes the context too."""

from typing import Any


def handler(event: dict[str, Any]) -> dict[str, Any]:
    return {"ok": True}
