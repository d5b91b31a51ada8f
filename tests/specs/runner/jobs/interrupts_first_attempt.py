"""Attempt 1 raises the BaseException ``input.raise`` names; later attempts succeed."""

from __future__ import annotations

from typing import Any


class Halt(BaseException):
    """A BaseException of the job's own."""


RAISED: dict[str, type[BaseException]] = {
    "KeyboardInterrupt": KeyboardInterrupt,
    "GeneratorExit": GeneratorExit,
    "Halt": Halt,
}


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    if event["attempt"] == 1:
        raise RAISED[event["input"]["raise"]]("stopped by the job")
    return {"attempt": event["attempt"]}
