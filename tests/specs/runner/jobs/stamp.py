"""Records its phase, so a test can read the phase order back from the statuses."""

from __future__ import annotations

from typing import Any


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    return {"phase": event["phase"]}
