"""Takes its Lambda down with it (like a segfault or an exit): no report, Lambda retries."""

from __future__ import annotations

from typing import Any


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    raise SystemExit(f"{event['job']} took the runtime down on attempt {event['attempt']}")
