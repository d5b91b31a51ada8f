"""The reconciler's cost per pass: MongoDB commands and time, with many ended runs around.

One database holds ``ended`` finished runs of the workflow (each with its statuses) and
``running`` runs that have not been written for an hour, every one with an attempt that reported
``started`` and is still running: a pass over them finds nothing to repair (``idle``). Then half
of the running runs get a ``success`` that never reached the orchestrator and the other half lose
their attempt's ``started`` (the invocation was lost): the next pass repairs every one
(``repair``). The ended runs must cost nothing: the pass reads the running runs from an index
that holds only running runs.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from datetime import timedelta
from typing import Any

from benchmarks.orchestration import (
    CommandCounter,
    CountingDispatcher,
    Progress,
    new_client,
    scratch_databases,
)
from runtime.clock import utcnow
from runtime.definition.model import Job, Phase, Workflow
from runtime.documents.run import Document, JobRecord, StatusEvent, run_to_document
from runtime.service.reconciler import Reconciler
from runtime.service.runs import initial_run
from runtime.statuses import JobState, RunState, StatusName
from runtime.store.mongo import MongoStore
from runtime.store.settings import StoreSettings

WORKFLOW = Workflow(
    name="reconcile_bench",
    phases=(
        Phase(
            name="p",
            jobs=(Job(name="a", phase="p"), Job(name="b", phase="p", after=("a",))),
        ),
    ),
)
BATCH = 1000


def _status(run_id: str, status: StatusName, job: str | None = None, attempt: int = 0) -> StatusEvent:
    return StatusEvent(
        run_id=run_id,
        workflow=WORKFLOW.name,
        status=status,
        phase="p" if job else None,
        job=job,
        attempt=attempt,
        output={} if status == StatusName.SUCCESS else None,
    )


def _seed(store: MongoStore, ended: int, running: int) -> list[str]:
    """Insert the runs and their statuses in bulk; the ids of the running runs."""
    an_hour_ago = utcnow() - timedelta(hours=1)
    runs: list[Document] = []
    statuses: list[Document] = []
    base = initial_run(WORKFLOW, "template", {})
    done = JobRecord(state=JobState.SUCCEEDED, attempt=1, output={})
    for index in range(ended):
        run_id = f"ended-{index}"
        run = replace(base, run_id=run_id, state=RunState.SUCCEEDED, jobs={"a": done, "b": done})
        runs.append(run_to_document(run, an_hour_ago))
        for event in (
            _status(run_id, StatusName.WORKFLOW_STARTED),
            _status(run_id, StatusName.STARTED, "a", 1),
            _status(run_id, StatusName.SUCCESS, "a", 1),
            _status(run_id, StatusName.STARTED, "b", 1),
            _status(run_id, StatusName.SUCCESS, "b", 1),
            _status(run_id, StatusName.WORKFLOW_SUCCEEDED),
        ):
            statuses.append(event.to_document(an_hour_ago))
    running_ids = []
    in_flight = JobRecord(
        state=JobState.DISPATCHED, attempt=1, caused_by="workflow_started", claimed_at=an_hour_ago
    )
    for index in range(running):
        run_id = f"running-{index}"
        running_ids.append(run_id)
        run = replace(base, run_id=run_id, jobs={**base.jobs, "a": in_flight})
        runs.append(run_to_document(run, an_hour_ago))
        statuses.append(_status(run_id, StatusName.WORKFLOW_STARTED).to_document(an_hour_ago))
        statuses.append(_status(run_id, StatusName.STARTED, "a", 1).to_document(an_hour_ago))
    for start in range(0, len(runs), BATCH):
        store.runs.insert_many(runs[start : start + BATCH])
    for start in range(0, len(statuses), BATCH):
        # Written as the control plane writes them: past the validator that admits job reports only.
        store.statuses.insert_many(statuses[start : start + BATCH], bypass_document_validation=True)
    return running_ids


def _measured_pass(reconciler: Reconciler, counter: CommandCounter) -> dict[str, Any]:
    counter.take()
    started = time.perf_counter()
    report = reconciler.reconcile_pass()
    seconds = time.perf_counter() - started
    commands = counter.take()
    return {
        "runs_checked": report.runs_checked,
        "runs_repaired": len(report.repaired_runs),
        "statuses_applied": report.statuses_applied,
        "redispatched": report.redispatched,
        "commands": commands["total"],
        "reads": commands["reads"],
        "writes": commands["writes"],
        "commands_per_run_checked": round(commands["total"] / max(report.runs_checked, 1), 2),
        "ms": round(seconds * 1000, 1),
    }


def reconciler_cost(uri: str, ended: int, running: int, progress: Progress) -> dict[str, Any]:
    """A pass that finds nothing to repair and one that repairs every running run."""
    logging.getLogger("runtime.service.reconciler").setLevel(logging.ERROR)  # a line per repair, 50 times
    with scratch_databases(uri, "reconcile") as (database,):
        counter = CommandCounter()
        client = new_client(uri, counter)
        try:
            store = MongoStore(client, StoreSettings(database=database))
            store.ensure_indexes()
            progress(f"reconciler: seeding {ended} ended and {running} running runs")
            running_ids = _seed(store, ended, running)
            dispatcher = CountingDispatcher()
            reconciler = Reconciler(
                store, dispatcher, stale_after=timedelta(minutes=5), workflow=WORKFLOW.name
            )
            progress("reconciler: a pass with nothing to repair")
            idle = _measured_pass(reconciler, counter)
            half = len(running_ids) // 2
            for run_id in running_ids[:half]:
                store.record_status(_status(run_id, StatusName.SUCCESS, "a", 1))
            store.statuses.delete_many({"runId": {"$in": running_ids[half:]}, "status": "started"})
            progress("reconciler: a pass repairing every running run")
            repair = _measured_pass(reconciler, counter)
            repair["dispatched"] = len(dispatcher.events)
        finally:
            client.close()
    return {
        "reconciler_pass": {
            "ended_runs": ended,
            "running_runs": running,
            "idle": idle,
            "repair": repair,
        },
        "reconciler_commands_per_idle_run": idle["commands_per_run_checked"],
    }
