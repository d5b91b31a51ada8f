"""Counts its execution, then fails: the code a user is about to fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    with Path(event["input"]["log"]).open("a", encoding="utf-8") as log:
        log.write(f"{event['job']}\n")
    raise RuntimeError("not fixed yet")
