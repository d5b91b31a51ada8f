"""A workflow's ``schedule`` read as EventBridge Scheduler reads it: the times it fires at, and
the run each firing starts (its id and input carry the time it was scheduled for,
``scheduled_time``, UTC, to the minute). The dev server plays schedules with it
(``cdk_app.local.schedules``), and a backfill starts the runs of a past range with it, each the
very run the schedule would have started then (the same id: none starts twice).

A cron expression is matched against each minute in the spec's ``schedule_timezone``
(``zoneinfo``; UTC without one): a local time that repeats when daylight saving time ends matches
twice, one that is skipped never. A rate counts from an anchor the caller gives (EventBridge
counts from when the schedule was made, which is known only to it). ``L``, ``W`` and ``#`` in a
cron expression are played only by EventBridge Scheduler: ``ValueError`` says so.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from runtime.contracts import SCHEDULED_TIME
from runtime.definition.model import Workflow

CRON = re.compile(r"cron\((.+)\)\Z")
RATE = re.compile(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)\Z")
MONTH_NAMES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
MONTHS = {name: number for number, name in enumerate(MONTH_NAMES, 1)}
WEEKDAYS = {name: number for number, name in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"), 1)}
"""Cron's day-of-week: 1 is Sunday."""


@dataclass(frozen=True)
class Cron:
    """A cron expression's fields; None: any value (``*`` or ``?``)."""

    minutes: frozenset[int] | None
    hours: frozenset[int] | None
    days: frozenset[int] | None
    months: frozenset[int] | None
    weekdays: frozenset[int] | None
    years: frozenset[int] | None

    def matches(self, local: datetime) -> bool:
        weekday = local.isoweekday() % 7 + 1
        return all(
            allowed is None or value in allowed
            for allowed, value in (
                (self.minutes, local.minute),
                (self.hours, local.hour),
                (self.days, local.day),
                (self.months, local.month),
                (self.weekdays, weekday),
                (self.years, local.year),
            )
        )


def parse_cron(expression: str) -> Cron:
    """``cron(minutes hours day-of-month month day-of-week year)``; ``ValueError`` says what the
    dev server cannot play."""
    match = CRON.fullmatch(expression)
    fields = match.group(1).split() if match else []
    if len(fields) != 6:
        raise ValueError(f"{expression!r} is not cron(<6 fields>)")
    plain: Mapping[str, int] = {}
    bounds = (
        (0, 59, plain),
        (0, 23, plain),
        (1, 31, plain),
        (1, 12, MONTHS),
        (1, 7, WEEKDAYS),
        (1970, 2199, plain),
    )
    values = [_field(text, low, high, names) for text, (low, high, names) in zip(fields, bounds, strict=True)]
    return Cron(*values)


def _field(text: str, low: int, high: int, names: Mapping[str, int]) -> frozenset[int] | None:
    if text in ("*", "?"):
        return None
    allowed: set[int] = set()
    for part in text.split(","):
        span, _, step_text = part.partition("/")
        first, _, last = span.partition("-")
        start = low if first == "*" else _number(first, names)
        end = high if first == "*" or (step_text and not last) else _number(last, names) if last else start
        step = int(step_text) if step_text else 1
        if not (low <= start <= high and low <= end <= high) or step < 1:
            raise ValueError(f"'{text}' is outside {low}-{high}")
        allowed.update(range(start, end + 1, step))
    return frozenset(allowed)


def _number(text: str, names: Mapping[str, int]) -> int:
    named = names.get(text.upper())
    if named is not None:
        return named
    if not text.isdigit():
        if any(mark in text.upper() for mark in ("L", "W", "#")):
            raise ValueError(f"'{text}': L, W and # are played only by EventBridge Scheduler, not locally")
        raise ValueError(f"'{text}' is not a number")
    return int(text)


def firings(workflow: Workflow, after: datetime, until: datetime, anchor: datetime) -> list[datetime]:
    """The times in (``after``, ``until``] the workflow's schedule fires at (UTC), a rate counting
    from ``anchor``. ``ValueError`` for a cron expression that cannot be played here."""
    assert workflow.schedule is not None
    rate = RATE.fullmatch(workflow.schedule)
    if rate is not None:
        unit = rate.group(2).rstrip("s")
        period = timedelta(**{f"{unit}s": int(rate.group(1))})
        passed = max(0, (after - anchor) // period + 1)
        times = []
        while (time := anchor + passed * period) <= until:
            times.append(time)
            passed += 1
        return times
    cron = parse_cron(workflow.schedule)
    zone = ZoneInfo(workflow.schedule_timezone or "UTC")
    minute = after.replace(second=0, microsecond=0)
    times = []
    while (minute := minute + timedelta(minutes=1)) <= until:
        if cron.matches(minute.astimezone(zone)):
            times.append(minute)
    return times


@dataclass(frozen=True, kw_only=True)
class ScheduledStart:
    """The run a firing starts: its time, id and input."""

    time: datetime
    run_id: str
    input: dict[str, Any]

    @property
    def scheduled_time(self) -> str:
        return scheduled_text(self.time)


def scheduled_text(time: datetime) -> str:
    """A fire time as Scheduler's ``<aws.scheduler.scheduled-time>`` writes it."""
    return time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def scheduled_run_id(workflow: Workflow, scheduled: str) -> str:
    """The id of the run the schedule starts at ``scheduled`` (``scheduled_text``, or Scheduler's
    placeholder for it)."""
    return f"{workflow.name}-{scheduled}"


def scheduled_input(workflow: Workflow, scheduled: str) -> dict[str, Any]:
    """The input of the run the schedule starts at ``scheduled``."""
    return {**(workflow.schedule_input or {}), SCHEDULED_TIME: scheduled}


def scheduled_start(workflow: Workflow, time: datetime) -> ScheduledStart:
    text = scheduled_text(time)
    return ScheduledStart(
        time=time, run_id=scheduled_run_id(workflow, text), input=scheduled_input(workflow, text)
    )
