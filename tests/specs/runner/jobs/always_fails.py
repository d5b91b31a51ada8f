"""Fails every attempt."""

from __future__ import annotations

from typing import Any


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    raise RuntimeError(f"{event['job']} broke on attempt {event['attempt']}")
