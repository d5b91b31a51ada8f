"""The sweep that fires due timers: a ``timer_fired`` status for each timer whose time has
come (``runtime.engine.timers`` decides what it does), run by the reconciler's minute schedule in
the cloud and by the local runner and the dev server on this machine."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime

from runtime.aws.telemetry import observe_timer_fired
from runtime.clock import utcnow
from runtime.engine.timers import pending_timers
from runtime.ports import RunStore
from runtime.service import job_limits
from runtime.service.job_limits import Send

log = logging.getLogger(__name__)


MIN_PAUSE_SECONDS = 0.2
"""The shortest sleep between two looks for due timers."""


RUNS_PER_SWEEP = 1000
"""Runs with due timers one sweep fires at most (the earliest first); the next takes the rest."""


def fire_due_timers(
    store: RunStore, now: datetime, workflow: str | None = None, invoke: Send | None = None
) -> int:
    """Insert ``timer_fired`` for every timer due at ``now`` (of runs of ``workflow``), then move
    each run's ``wakeAt`` on to its next timer, guarded by the version read, so a decision that
    lowered it meanwhile keeps its value. A fired timer whose status is lost on the way is the
    reconciler's, as any lost status is. With ``invoke`` (how an attempt that may go is invoked),
    the queues of jobs' rate limits whose next window has come move too
    (``runtime.service.job_limits.wake_due``). How many statuses were new."""
    if invoke is not None:
        job_limits.wake_due(store, invoke, now, workflow)
    fired = 0
    for run_id in store.runs_due(now, RUNS_PER_SWEEP, workflow):
        run = store.read_run(run_id)
        if run is None:
            continue
        timers = pending_timers(run)
        for due, event in timers:
            if due <= now:
                created = store.record_status(event)
                fired += created
                if created:
                    observe_timer_fired(event, due, now)
                    log.info("timer %s of run %r fired (due %s)", event.key, run_id, due.isoformat())
        later = [due for due, _ in timers if due > now]
        store.set_wake(run_id, run.version, min(later, default=None))
    return fired


def fire_timers_until(
    store: RunStore,
    workflow: str | None,
    until: datetime,
    *,
    clock: Callable[[], datetime] = utcnow,
    sleep: Callable[[float], None] = time.sleep,
    invoke: Send | None = None,
) -> int:
    """Fire the due timers now, then sleep until the next one and fire it, for as long as the
    next is due by ``until``; the number of statuses fired. Run once a minute (the cloud's timer
    schedule), this fires every timer within a minute of its time, most within a second: a
    timer due inside the minute that exists at a look is fired when due, and one created after
    the last look of a minute is found by the next minute's first."""
    fired = 0
    while True:
        now = clock()
        fired += fire_due_timers(store, now, workflow, invoke)
        wake = store.next_wake(workflow)
        if invoke is not None:
            queue = store.job_limits().next_wake(workflow)
            wake = queue if wake is None or (queue is not None and queue < wake) else wake
        if wake is None or wake > until or now >= until:
            return fired
        # A wake already past is a sweep that lost its write to a decision: look again shortly.
        sleep(max(MIN_PAUSE_SECONDS, (wake - now).total_seconds()))
