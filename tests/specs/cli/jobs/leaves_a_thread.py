"""Starts a thread that sleeps for ten minutes (not a daemon: the interpreter joins it at exit),
then blocks until the file ``input.release`` exists."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    threading.Thread(target=time.sleep, args=(600,), name="left behind", daemon=False).start()
    release = Path(event["input"]["release"])
    while not release.exists():
        time.sleep(0.05)
    return {"released": True}
