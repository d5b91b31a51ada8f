"""Item ``input.slow`` blocks on its first attempt until the file named by ``input.release``
exists; every other attempt returns at once."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    release = Path(event["input"]["release"])
    first = event["attempt"] == 1
    while first and event["index"] == event["input"]["slow"] and not release.exists():
        time.sleep(0.05)
    return {"item": event["item"], "attempt": event["attempt"]}
