"""Blocks until the file named by ``input.release`` exists: a job that does not report until the
test lets it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    release = Path(event["input"]["release"])
    while not release.exists():
        time.sleep(0.05)
    return {"released": True}
