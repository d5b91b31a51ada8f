"""Counts its execution, then blocks until the file ``input.release`` names exists."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    with Path(event["input"]["log"]).open("a", encoding="utf-8") as log:
        log.write(f"{event['job']}\n")
    release = Path(event["input"]["release"])
    while not release.exists():
        time.sleep(0.05)
    return {"released": True}
