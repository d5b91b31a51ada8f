"""Counts its execution; the first attempt then hangs for good, a later one succeeds."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    with Path(event["input"]["log"]).open("a", encoding="utf-8") as log:
        log.write(f"{event['job']}\n")
    if event["attempt"] == 1:
        threading.Event().wait()
    return {"attempt": event["attempt"]}
