"""Returns its own name, for the jobs after it."""

from __future__ import annotations

from typing import Any


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    return {"name": event["job"]}
