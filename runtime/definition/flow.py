"""Flow control across runs (the spec's ``concurrency``, ``priority``, ``on_limit`` and
``schedule_overlap``): read into the IR, their JMESPath checked like a ``when`` (it compiles, reads
only ``input``)."""

from __future__ import annotations

from typing import Any

from runtime.definition.draft import known_fields
from runtime.definition.expressions import compiled, root_fields
from runtime.definition.model import ON_LIMIT, SCHEDULE_OVERLAP, RunConcurrency
from runtime.definition.report import JsonPath, Report, show

FLOW_ROOTS = ("input",)
"""What a concurrency ``key`` and a ``priority`` read: the run input, known when the run starts."""


def read_flow(spec: dict[str, Any], report: Report) -> dict[str, Any]:
    """The ``Workflow`` settings of a spec's flow control; the schema reports wrong types."""
    settings: dict[str, Any] = {}
    raw = known_fields(spec.get("concurrency"), "concurrency")
    limit = raw.get("limit")
    key = raw.get("key") if isinstance(raw.get("key"), str) and raw["key"] else None
    if key is not None:
        check_input_expression(("concurrency", "key"), key, report)
    if isinstance(limit, int) and not isinstance(limit, bool) and limit >= 1:
        settings["concurrency"] = RunConcurrency(limit=limit, key=key)
    if isinstance(spec.get("priority"), str) and spec["priority"]:
        check_input_expression(("priority",), spec["priority"], report)
        settings["priority"] = spec["priority"]
    if spec.get("on_limit") in ON_LIMIT:
        settings["on_limit"] = spec["on_limit"]
    if spec.get("schedule_overlap") in SCHEDULE_OVERLAP:
        settings["schedule_overlap"] = spec["schedule_overlap"]
    if "schedule" in spec and "concurrency" in settings:
        _check_overlap_with_concurrency(spec, report)
    return settings


def _check_overlap_with_concurrency(spec: dict[str, Any], report: Report) -> None:
    """A run holds one slot at most: the overlap policy's or its ``concurrency`` key's. Holding
    both would mean holding one while queued for the other (two queues, two releases, twice the
    crash points to repair), so with ``concurrency`` scheduled runs count under it alone."""
    overlap = spec.get("schedule_overlap", "skip")
    if overlap != "allow":
        written = "schedule_overlap" in spec
        report.add(
            ("schedule_overlap",) if written else ("concurrency",),
            f"schedule_overlap {overlap}{'' if written else ' (the default)'} cannot be combined with "
            "concurrency: a run waits for one slot, not two. Set schedule_overlap: allow, and the "
            "concurrency limit and on_limit govern scheduled runs too (concurrency: {limit: 1} with "
            "on_limit: skip keeps every run, scheduled or not, from overlapping)",
        )


def check_input_expression(path: JsonPath, expression: str, report: Report) -> None:
    """It compiles, does not negate before it reads, and reads nothing but ``input``."""
    parsed = compiled(path, expression, report)
    if parsed is None:
        return
    for root, _ in root_fields(parsed):
        if root not in FLOW_ROOTS:
            report.add(
                path,
                f"{show(expression)} reads {root!r}, but it is worked out when the run starts and sees "
                f"only 'input' (did you mean 'input.{root}'?)",
            )
