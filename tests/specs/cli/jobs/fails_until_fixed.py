"""Fails until the file ``input.fixed`` exists: a bug fixed between a run and its redrive."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    if not Path(event["input"]["fixed"]).exists():
        raise RuntimeError(f"not fixed yet (attempt {event['attempt']})")
    return {"fixed": True}
