"""Run concurrency's cost and queue: a burst of runs of a workflow with ``concurrency: {limit}``
on the local engine (the real orchestrator and job wrapper on the embedded server), against the
same burst of the same workflow without the limit.

All runs start at once, then the engine delivers what they record, round by round (every status
event of the round, then every attempt dispatched), until nothing is left. Measured: the longest
wait of a run in the queue (from its insert to its ``workflow_started``, from the statuses log),
the most runs in flight at once (from the same log: never above the limit), and the MongoDB
commands per run on each side, whose difference is what the limit costs a run.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from benchmarks.orchestration import CommandCounter, CountingDispatcher, new_client, scratch_databases
from cdk_app.local.atlas_events import envelope
from runtime.definition.model import Job, Phase, RunConcurrency, Workflow
from runtime.documents import ID
from runtime.documents.run import CREATED_AT, DATE, RUN_ID, STATUS
from runtime.handlers.job import stub_handler
from runtime.service.job_attempt import run_attempt
from runtime.service.orchestrator import Orchestrator
from runtime.service.runs import start_run
from runtime.statuses import ORCHESTRATOR_STATUSES, RUN_ENDS, StatusName
from runtime.store.mongo import MongoStore
from runtime.store.settings import StoreSettings

Progress = Callable[[str], None]

ENDS = {status.value for status in RUN_ENDS.values()}
DELIVERED = set(ORCHESTRATOR_STATUSES)


def _workflow(limit: int | None) -> Workflow:
    return Workflow(
        name=f"queue_bench_{uuid.uuid4().hex[:6]}",
        phases=(Phase(name="p", jobs=(Job(name="a", phase="p"), Job(name="b", phase="p", after=("a",)))),),
        concurrency=None if limit is None else RunConcurrency(limit=limit),
    )


def _burst(uri: str, database: str, runs: int, limit: int | None) -> dict[str, Any]:
    """Start ``runs`` runs at once and drive them to their end; the figures of that side."""
    settings = StoreSettings(database=database)
    counter = CommandCounter()
    measured = MongoStore(new_client(uri, counter), settings)
    reader = MongoStore(new_client(uri), settings)
    reader.ensure_indexes()
    definition = _workflow(limit)
    dispatcher = CountingDispatcher()
    orchestrator = Orchestrator(measured, dispatcher)
    statuses = reader.database[settings.statuses_collection]
    counter.take()
    started = time.perf_counter()
    run_ids = [start_run(measured, definition, run_id=f"run-{index:05}").run_id for index in range(runs)]
    seen: set[Any] = set()
    since: datetime | None = None
    rounds = 0
    while True:
        query = {} if since is None else {DATE: {"$gte": since}}
        fresh = [status for status in statuses.find(query).sort(DATE, 1) if status[ID] not in seen]
        jobs, dispatcher.events = dispatcher.events, []
        if not fresh and not jobs:
            break
        rounds += 1
        for status in fresh:
            seen.add(status[ID])
            since = status[DATE]
            if status[STATUS] in DELIVERED:
                orchestrator.handle(envelope(status, database, settings.statuses_collection))
        for job in jobs:
            run_attempt(measured, stub_handler, job.to_payload(), None, uuid.uuid4().hex)
    seconds = time.perf_counter() - started
    commands = counter.take()
    waits, deepest = _queue_figures(reader, run_ids)
    ended = statuses.count_documents({STATUS: {"$in": sorted(ENDS)}})
    return {
        "runs": runs,
        "runs_ended": ended,
        "commands_per_run": round(commands["total"] / runs, 2),
        "reads_per_run": round(commands["reads"] / runs, 2),
        "writes_per_run": round(commands["writes"] / runs, 2),
        "most_in_flight": deepest,
        "longest_queue_wait_s": round(max(waits), 3),
        "median_queue_wait_s": round(sorted(waits)[len(waits) // 2], 3),
        "delivery_rounds": rounds,
        "wall_s": round(seconds, 2),
    }


def _queue_figures(store: MongoStore, run_ids: list[str]) -> tuple[list[float], int]:
    """Each run's wait from its insert to its ``workflow_started``, and the most runs in flight at
    once, from the statuses log (an end and a start at the same instant: the end first)."""
    settings = store.settings
    created = {
        doc[ID]: doc[CREATED_AT]
        for doc in store.database[settings.runs_collection].find({ID: {"$in": run_ids}}, {CREATED_AT: 1})
    }
    waits: list[float] = []
    edges: list[tuple[datetime, int]] = []
    for doc in store.database[settings.statuses_collection].find({}, {RUN_ID: 1, STATUS: 1, DATE: 1}):
        if doc[STATUS] == StatusName.WORKFLOW_STARTED.value:
            waits.append((doc[DATE] - created[doc[RUN_ID]]).total_seconds())
            edges.append((doc[DATE], 1))
        elif doc[STATUS] in ENDS:
            edges.append((doc[DATE], -1))
    depth = deepest = 0
    for _, step in sorted(edges):
        depth += step
        deepest = max(deepest, depth)
    return waits, deepest


def run_queue(uri: str, runs: int, limit: int, progress: Progress) -> dict[str, Any]:
    """``run_queue``: the burst with ``concurrency: {limit}`` and without, and the difference."""
    with scratch_databases(uri, "queue_limited", "queue_free") as (limited_db, free_db):
        progress(f"run queue: {runs} runs with concurrency limit {limit}")
        limited = _burst(uri, limited_db, runs, limit)
        progress(f"run queue: {runs} runs without a limit")
        free = _burst(uri, free_db, runs, None)
    extra = round(limited["commands_per_run"] - free["commands_per_run"], 2)
    return {
        "run_queue": {"limit": limit, "limited": limited, "unlimited": free},
        "run_queue_longest_wait_s": limited["longest_queue_wait_s"],
        "run_queue_most_in_flight": limited["most_in_flight"],
        "run_queue_extra_commands_per_run": extra,
    }
