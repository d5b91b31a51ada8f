"""Sleeps for ``input.seconds`` (default 10), then succeeds."""

from __future__ import annotations

import time
from typing import Any


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    time.sleep(event["input"].get("seconds", 10))
    return {"slept": True}
