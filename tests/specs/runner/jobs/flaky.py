"""Fails its first ``FAILURES`` attempts, then succeeds: deterministic from the attempt number,
so a redelivered attempt behaves exactly like the first delivery."""

from __future__ import annotations

from typing import Any

FAILURES = 2


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    if event["attempt"] <= FAILURES:
        raise RuntimeError(f"flaky failure on attempt {event['attempt']}")
    return {"succeeded_on": event["attempt"]}
