"""Sleeps ``input.sleep`` seconds, then writes the file ``input.written``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    time.sleep(event["input"]["sleep"])
    Path(event["input"]["written"]).write_text("still running after the timeout\n", encoding="utf-8")
    return {}
