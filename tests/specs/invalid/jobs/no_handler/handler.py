"""A job folder whose handler.py names its entry point ``main``, not ``handler``."""

from typing import Any


def main(event: dict[str, Any], context: object) -> dict[str, Any]:
    return {"ok": True}
