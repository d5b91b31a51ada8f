"""The ``callback`` key of a job completed from outside through a token: ``timeout``, with or
without ``code``. The schema checks the value's shape; this module reports the keys a callback
job cannot have and builds ``Callback``."""

from __future__ import annotations

from typing import Any

from runtime.definition.draft import DraftJob, known_fields
from runtime.definition.model import Callback
from runtime.definition.report import Report

EXCLUSIVE = ("wait", "approval", "event", "workflow", "invoke", "http", "call", "for_each")
"""Keys that make a job something else than one attempt that a token completes: ``code`` may
come with ``callback`` (it hands the token out), these may not."""


def read_callback(job: DraftJob, own: dict[str, Any], report: Report) -> dict[str, Any]:
    """The ``Job`` field ``callback`` sets, with its problems reported."""
    if "callback" not in own:
        return {}
    for key in EXCLUSIVE:
        if key in own:
            report.add(
                (*job.path, key),
                f"a job completed by a callback token has no '{key}': remove '{key}' or 'callback'",
            )
    timeout = known_fields(own["callback"], "callback").get("timeout")
    if not isinstance(timeout, int) or isinstance(timeout, bool):
        return {}  # the schema reports it
    runs_code = isinstance(own.get("code"), str) and bool(own["code"])
    return {"callback": Callback(timeout=timeout, runs_code=runs_code)}
