"""Structured log lines: every record a function logs is one JSON object with the workflow, run,
job, attempt and trace id it is about, so CloudWatch Logs Insights filters one run across the
orchestrator's and the jobs' log groups (docs/observability.md has the queries).

The fields come from ``log_context``, which the job wrapper and the orchestrator set around the
work of one attempt or one event (a context variable: each thread and each invocation its own).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from runtime.documents import traces

_fields: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("workflow_log_fields", default={})  # noqa: B039 - never mutated

FIELDS = ("workflow", "run_id", "phase", "job", "attempt", "index", "trace_id")
"""The fields a line carries when they are known, in this order, after time, level and message."""


@contextlib.contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Log lines in the block carry ``fields`` (those set outside it too); ``run_id`` brings the
    run's ``trace_id``."""
    values = {name: value for name, value in fields.items() if value is not None}
    if "run_id" in values:
        values.setdefault("trace_id", traces.trace_id(values["run_id"]))
    token = _fields.set({**_fields.get(), **values})
    try:
        yield
    finally:
        _fields.reset(token)


def event_fields(event: object) -> dict[str, Any]:
    """The log fields a job event carries (those of them that are plain values), read before the
    event is parsed, so even the lines about a malformed event say what they can."""
    if not isinstance(event, dict):
        return {}
    return {
        name: event[name]
        for name in FIELDS
        if isinstance(event.get(name), str | int) and not isinstance(event.get(name), bool)
    }


def current_fields() -> dict[str, Any]:
    return dict(_fields.get())


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``time``, ``level``, ``logger``, ``message``, the context's
    fields, and the exception's traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = _fields.get()
        line.update((name, fields[name]) for name in FIELDS if name in fields)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def use_json_logs() -> None:
    """Format the root logger's records as JSON lines. Lambda's Python runtime installs its own
    handler on the root logger: its formatter is replaced, its level (what is logged) kept."""
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler())
    for handler in root.handlers:
        handler.setFormatter(JsonFormatter())
