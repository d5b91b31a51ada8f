"""Attempt 1 blocks until the file named by ``input.release`` exists; later attempts succeed."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    release = Path(event["input"]["release"])
    while event["attempt"] == 1 and not release.exists():
        time.sleep(0.05)
    return {"attempt": event["attempt"]}
