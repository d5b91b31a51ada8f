"""A handler kept in a folder, importing its neighbour as it would on Lambda."""

from __future__ import annotations

from typing import Any

from greeting import greet  # type: ignore[import-not-found]  # the folder is on sys.path at run time


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    return {"greeting": greet(event["input"].get("name", "world"))}
