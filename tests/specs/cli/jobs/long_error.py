"""Fails with an error of 300 characters whose last words say it ended."""

from __future__ import annotations

from typing import Any


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    raise ValueError("the ledger does not balance: " + "x" * 250 + f" (attempt {event['attempt']}) THE END")
