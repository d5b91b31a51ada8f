"""Example job: pretend to extract yesterday's orders. Returning is success; raising is failure."""

from __future__ import annotations

from typing import Any


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    """The output becomes ``results.extract_orders`` for the jobs that run after this one."""
    mode = event["input"].get("mode", "quick")
    return {"orders": 42 if mode == "full" else 7, "attempt": event["attempt"]}
