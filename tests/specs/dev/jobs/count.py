"""Appends the job's name to the file ``input.log`` names: one line per execution of job code."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    with Path(event["input"]["log"]).open("a", encoding="utf-8") as log:
        log.write(f"{event['job']}\n")
    return {"job": event["job"], "attempt": event["attempt"]}
