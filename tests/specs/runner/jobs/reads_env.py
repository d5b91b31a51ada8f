"""Returns the environment variables its job sets, once the other job of the phase has started too
(so both run at the same time): each writes its name into ``input.folder`` and waits for two."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

COLOUR_AT_IMPORT = os.environ.get("COLOUR")


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    folder = Path(event["input"]["folder"])
    (folder / event["job"]).touch()
    deadline = time.monotonic() + 20
    while len(list(folder.iterdir())) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    return {
        "colour": os.environ.get("COLOUR"),
        "at_import": COLOUR_AT_IMPORT,
        "shared": os.environ.get("SHARED_SETTING"),
        "together": len(list(folder.iterdir())) == 2,
    }
