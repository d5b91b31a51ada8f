"""Counts the outputs it was given: a join sees every job it waits for."""

from __future__ import annotations

from typing import Any


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    return {"results": sorted(event["results"])}
