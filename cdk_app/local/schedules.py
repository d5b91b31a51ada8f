"""The workflows' ``schedule`` played by the dev server, as EventBridge Scheduler plays it in the
cloud (``constructs/start_schedule.py``): each firing starts a scheduled run whose id and input
carry the time it was scheduled for (``runtime.engine.schedule``).

A rate counts from the time the dev server first saw the spec. Minutes that passed while the dev
server was not running are not made up for (``backfill`` starts them). ``L``, ``W`` and ``#`` in
a cron expression are not played locally: the dev server says so once and leaves that schedule
alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

from runtime.definition.model import Workflow
from runtime.engine.schedule import firings, scheduled_start, scheduled_text
from runtime.errors import RunError, StoreError
from runtime.ports import RunStore
from runtime.service.runs import start_run

LOOK_BACK = timedelta(days=1)
"""Time looked at in one tick at most: after a longer pause, only the last day's firings."""


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
                due = firings(workflow, max(last, now - LOOK_BACK), now, anchor)
            except ValueError as exc:
                if (workflow.name, setting) not in self._told:
                    self._told.add((workflow.name, setting))
                    self.say(f"schedule of {workflow.name} not played locally: {exc}")
                continue
            started += [run_id for time in due if (run_id := self._start(workflow, time))]
        return started

    def _start(self, workflow: Workflow, time: datetime) -> str | None:
        start = scheduled_start(workflow, time)
        try:
            return start_run(
                self.store, workflow, run_id=start.run_id, input=start.input, scheduled=True
            ).run_id
        except (RunError, StoreError) as exc:  # a refused input, a store that fails: said, not fatal
            self.say(f"scheduled run of {workflow.name} at {scheduled_text(time)} not started: {exc}")
            return None
