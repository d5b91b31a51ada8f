"""The console's workflow page: a workflow's runs of the last hours as the dashboard shows them
(docs/observability.md): runs per hour by outcome, run duration percentiles, and the slowest
jobs. Read from the run documents, the console's one source, with the metrics' definitions: a
run's duration from its start to its last write once ended (``RunDuration``), a job's from its
last attempt's dispatch to its end (what ``AttemptDuration`` measures, plus the queueing before
it; the run document keeps no earlier attempt's times)."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from cdk_app.console.listing import RunFilters, runs_page
from runtime.clock import as_utc
from runtime.statuses import RunState
from runtime.store.mongo import MongoStore

MAX_RUNS = 1000
"""Runs the page reads at most (the newest): the charts stay cheap whatever the history."""
JOB_RUNS = 50
"""Ended runs whose jobs the slowest-jobs chart reads (one run document each)."""
SLOWEST_SHOWN = 10
PERCENTILES = (50, 90, 99)


def percentile(values: list[float], rank: int) -> float | None:
    """The nearest-rank percentile (CloudWatch's ``pNN`` on few values is close to it)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(rank / 100 * len(ordered)) - 1)]


def workflow_stats(store: MongoStore, workflow: str, now: datetime, hours: int) -> dict[str, Any]:
    """The figures of ``workflow``'s runs started in the last ``hours`` hours (this one included)
    before ``now``."""
    first = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours - 1)
    runs = runs_page(store, RunFilters(workflow=workflow, since=first), size=MAX_RUNS).runs
    buckets: dict[datetime, dict[str, int]] = {
        first + timedelta(hours=offset): defaultdict(int) for offset in range(hours)
    }
    durations: list[float] = []
    ended: list[str] = []
    for run in runs:
        created, updated = as_utc(run.created_at), as_utc(run.updated_at)
        if created is None:
            continue
        hour = created.replace(minute=0, second=0, microsecond=0)
        if hour in buckets:
            buckets[hour][run.status.value] += 1
        if run.status != RunState.RUNNING and updated is not None:
            durations.append((updated - created).total_seconds())
            ended.append(run.run_id)
    return {
        "workflow": workflow,
        "hours": hours,
        "runs": len(runs),
        "per_hour": [
            {"hour": hour.isoformat(), **{state.value: counts.get(state.value, 0) for state in RunState}}
            for hour, counts in sorted(buckets.items())
        ],
        "duration_seconds": {f"p{rank}": percentile(durations, rank) for rank in PERCENTILES}
        | {"runs": len(durations)},
        "slowest_jobs": _slowest_jobs(store, ended[:JOB_RUNS]),
    }


def _slowest_jobs(store: MongoStore, run_ids: list[str]) -> list[dict[str, Any]]:
    seconds: dict[str, list[float]] = defaultdict(list)
    for run_id in run_ids:
        run = store.read_run(run_id)
        if run is None:
            continue
        for name, record in run.jobs.items():
            claimed, finished = as_utc(record.claimed_at), as_utc(record.finished_at)
            if claimed is not None and finished is not None and finished >= claimed:
                seconds[name].append((finished - claimed).total_seconds())
    slowest = sorted(seconds.items(), key=lambda item: (-(percentile(item[1], 90) or 0.0), item[0]))
    return [
        {"job": name, "p90_seconds": percentile(values, 90), "max_seconds": max(values), "runs": len(values)}
        for name, values in slowest[:SLOWEST_SHOWN]
    ]
