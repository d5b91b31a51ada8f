"""Example job kept in a folder: ``code`` names the folder and ``handler.py`` is its entry point."""

from __future__ import annotations

from typing import Any


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    """A run id makes a natural idempotency key for the carrier: a retried attempt ships once."""
    return {"shipment": f"ship-{event['run_id']}", "attempt": event["attempt"]}
