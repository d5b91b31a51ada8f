"""The workflows' ``schedule`` played by the dev server, as EventBridge Scheduler plays it in the
cloud (``constructs/start_schedule.py``): each firing starts a run whose id and input carry the
time it was scheduled for (``scheduled_time``, UTC, to the minute).

A cron expression is matched against each minute in the spec's ``schedule_timezone``
(``zoneinfo``; UTC without one): a local time that repeats when daylight saving time ends matches
twice, one that is skipped never. A rate counts from the time the dev server first saw the spec.
Minutes that passed while the dev server was not running are not made up for. ``L``, ``W`` and
``#`` in a cron expression are not played locally: the dev server says so once and leaves that
schedule alone.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from runtime.contracts import SCHEDULED_TIME
from runtime.definition.model import Workflow
from runtime.errors import RunError, StoreError
from runtime.ports import RunStore
from runtime.service.runs import start_run

CRON = re.compile(r"cron\((.+)\)\Z")
RATE = re.compile(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)\Z")
MONTH_NAMES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
MONTHS = {name: number for number, name in enumerate(MONTH_NAMES, 1)}
WEEKDAYS = {name: number for number, name in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"), 1)}
"""Cron's day-of-week: 1 is Sunday."""
MOST_MINUTES = 24 * 60
"""Minutes looked at in one tick at most: after a longer pause, only the last day's firings."""


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
    from ``anchor``."""
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
        return times[-MOST_MINUTES:]
    cron = parse_cron(workflow.schedule)
    zone = ZoneInfo(workflow.schedule_timezone or "UTC")
    minute = max(after, until - timedelta(minutes=MOST_MINUTES)).replace(second=0, microsecond=0)
    times = []
    while (minute := minute + timedelta(minutes=1)) <= until:
        if cron.matches(minute.astimezone(zone)):
            times.append(minute)
    return times


class ScheduleClock:
    """Starts the runs the deployed workflows' schedules are due to start."""

    def __init__(self, store: RunStore, say: Callable[[str], None]) -> None:
        self.store = store
        self.say = say
        self._seen: dict[str, tuple[str, datetime, datetime]] = {}
        """Workflow -> (its schedule, when it was first seen so, the time looked at last)."""
        self._told: set[tuple[str, str]] = set()

    def tick(self, workflows: Mapping[str, Workflow], now: datetime) -> list[str]:
        """Start the runs due since the last tick; the run ids started."""
        started: list[str] = []
        for workflow in workflows.values():
            if workflow.schedule is None:
                continue
            setting = f"{workflow.schedule} {workflow.schedule_timezone or 'UTC'}"
            seen = self._seen.get(workflow.name)
            if seen is None or seen[0] != setting:
                self._seen[workflow.name] = (setting, now, now)
                continue
            _, anchor, last = seen
            self._seen[workflow.name] = (setting, anchor, now)
            try:
                due = firings(workflow, last, now, anchor)
            except ValueError as exc:
                if (workflow.name, setting) not in self._told:
                    self._told.add((workflow.name, setting))
                    self.say(f"schedule of {workflow.name} not played locally: {exc}")
                continue
            started += [run_id for time in due if (run_id := self._start(workflow, time))]
        return started

    def _start(self, workflow: Workflow, time: datetime) -> str | None:
        scheduled = time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        run_input = {**(workflow.schedule_input or {}), SCHEDULED_TIME: scheduled}
        try:
            return start_run(
                self.store, workflow, run_id=f"{workflow.name}-{scheduled}", input=run_input
            ).run_id
        except (RunError, StoreError) as exc:  # a refused input, a store that fails: said, not fatal
            self.say(f"scheduled run of {workflow.name} at {scheduled} not started: {exc}")
            return None
