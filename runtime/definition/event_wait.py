"""The ``event`` key of a job that waits for an event instead of running code: ``name``,
``match`` (JMESPath over ``{input, results, event}``), ``timeout`` and ``retention``. The schema
checks each value's shape; this module reports what it cannot see and builds ``EventWait``."""

from __future__ import annotations

from typing import Any

from runtime.definition.draft import DraftJob, known_fields
from runtime.definition.expressions import compiled, top_level_fields
from runtime.definition.model import DEFAULT_EVENT_RETENTION, EventWait
from runtime.definition.report import Report, name_list, show

EXCLUSIVE = ("code", "wait", "approval", "invoke", "http", "call", "for_each")
"""Keys that make a job something else than a wait for one event."""

MATCH_ROOTS = ("input", "results", "event")
"""What ``match`` reads at its top level: the run's input, the outputs of the jobs before, and
the event's payload."""


def read_event(job: DraftJob, own: dict[str, Any], report: Report) -> dict[str, Any]:
    """The ``Job`` field ``event`` sets, with its problems reported."""
    if "event" not in own:
        return {}
    path = (*job.path, "event")
    for key in EXCLUSIVE:
        if key in own:
            report.add(
                (*job.path, key),
                f"a job that waits for an event runs no '{key}': remove '{key}' or 'event'",
            )
    fields = known_fields(own["event"], "event")
    name, timeout = fields.get("name"), fields.get("timeout")
    retention = fields.get("retention", DEFAULT_EVENT_RETENTION)
    match = fields.get("match")
    if isinstance(match, str):
        _check_match(match, (*path, "match"), report)
    if not isinstance(name, str) or not isinstance(timeout, int) or not isinstance(retention, int):
        return {}  # the schema reports each of these
    if isinstance(timeout, bool) or isinstance(retention, bool):
        return {}
    return {
        "event": EventWait(
            name=name, timeout=timeout, retention=retention, match=match if isinstance(match, str) else None
        )
    }


def _check_match(match: str, path: tuple[str | int, ...], report: Report) -> None:
    parsed = compiled(path, match, report)
    if parsed is None:
        return
    for root in sorted(top_level_fields(parsed)):
        if root not in MATCH_ROOTS:
            report.add(
                path,
                f"{show(match)} reads {root!r}, but 'match' sees only {name_list(MATCH_ROOTS)} "
                f"(did you mean 'event.{root}'?)",
            )
