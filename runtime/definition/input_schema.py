"""A spec's ``input_schema``: read inline or from a file beside the spec, checked to be a valid
JSON Schema (2020-12), and ``schedule_input`` checked against it, all at build time."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from runtime.contracts import SCHEDULED_TIME
from runtime.definition.input_check import input_problems
from runtime.definition.reading import read_spec_file
from runtime.definition.report import JsonPath, Report, kind_of

WHERE: JsonPath = ("input_schema",)


def read_input_schema(raw: object, report: Report, base_dir: Path) -> Mapping[str, Any] | None:
    """The schema (inline, or the JSON or YAML file ``raw`` names relative to the spec), or None
    with the reasons in ``report``."""
    if isinstance(raw, str):
        path = base_dir / raw
        if not path.is_file():
            report.add(WHERE, f"input schema file {raw!r} not found (looked for {path.as_posix()})")
            return None
        file = read_spec_file(path)
        for problem in file.report.problems:
            report.add(WHERE, f"in {raw}: {problem.path or ''} {problem.message}".replace("  ", " "))
        raw = file.document
        if file.report.problems:
            return None
    if not isinstance(raw, dict):
        report.add(WHERE, f"an input schema is a JSON Schema object, got {kind_of(raw)}")
        return None
    try:
        Draft202012Validator.check_schema(raw)
    except SchemaError as exc:
        where = "".join(f"[{part!r}]" if isinstance(part, str) else f"[{part}]" for part in exc.path)
        report.add(WHERE, f"not a valid JSON Schema (2020-12): {where or 'at the top'}: {exc.message}")
        return None
    return raw


SAMPLE_SCHEDULED_TIME = "2026-01-01T02:00:00Z"
"""What a scheduled run's ``scheduled_time`` looks like, for checking the input schema."""


def check_schedule_input(schema: Mapping[str, Any] | None, schedule_input: object, report: Report) -> None:
    """Scheduled runs would be refused at every tick: say so now, every problem at its place.
    Their input is ``schedule_input`` with ``scheduled_time`` added."""
    given = schedule_input if isinstance(schedule_input, Mapping) else {}
    if SCHEDULED_TIME in given:
        report.add(
            ("schedule_input", SCHEDULED_TIME),
            f"scheduled runs get {SCHEDULED_TIME!r} (the time the schedule fired): "
            "schedule_input may not set it",
        )
        return
    if schema is None:
        return
    problems = list(input_problems(schema, schedule_input)) if schedule_input is not None else []
    for path, _, message in problems:
        report.add(("schedule_input", *path), f"does not match input_schema: {message}")
    if problems:
        return
    for _, _, message in input_problems(schema, {**given, SCHEDULED_TIME: SAMPLE_SCHEDULED_TIME}):
        report.add(
            ("schedule",),
            f"a scheduled run's input has {SCHEDULED_TIME!r} (the time the schedule fired, e.g. "
            f"{SAMPLE_SCHEDULED_TIME!r}), which input_schema refuses: {message}; let input_schema allow it",
        )
