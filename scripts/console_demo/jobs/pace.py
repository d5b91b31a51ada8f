"""Takes ``input.pace`` seconds (drink_beer twice as long), then fails if it is ``input.fail``."""

from __future__ import annotations

import time
from typing import Any


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    run_input = event["input"]
    time.sleep(run_input.get("pace", 0) * (2 if event["job"] == "drink_beer" else 1))
    if event["job"] == run_input.get("fail"):
        raise RuntimeError(f"{event['job']}: the line snapped")
    return {"job": event["job"], "attempt": event["attempt"]}
