"""Executions against attempts: many runs through the local runner with every fault at once
(duplicated and reordered deliveries, orchestrator crashes, job wrapper crashes) and job code
that fails and takes its time at random. However the faults fall, a job's code must never run
more often than the run document counts attempts of it (docs/architecture.md, "Invariants", 3).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pymongo

from benchmarks.orchestration import Progress, scratch_databases
from cdk_app.local.delivery import FaultSettings
from cdk_app.local.runner import LocalRunner, RunOptions
from runtime.definition.loader import workflow_from_document
from runtime.definition.model import Workflow
from runtime.documents.run import StatusEvent
from runtime.store.mongo import MongoStore
from runtime.store.settings import StoreSettings

FAILURE_RATE = 0.2
"""How often a job's code raises on purpose."""

FAULTS = FaultSettings(duplicate=2, reorder=True, crash=0.3, crash_jobs=0.2)
"""Every fault at once; each run gets a seed of its own."""


def faulty_workflow() -> Workflow:
    """Fan-out, joins and two phases, with retries enough that most runs get through."""
    job: dict[str, Any] = {"retries": 3}
    return workflow_from_document(
        {
            "workflow": "faulty",
            "phases": {
                "first": {
                    "jobs": {
                        "root": job,
                        **{f"fan_{index}": {**job, "after": ["root"]} for index in range(4)},
                        "join": {**job, "after": [f"fan_{index}" for index in range(4)]},
                    }
                },
                "second": {"jobs": {"left": job, "right": job, "end": {**job, "after": ["left", "right"]}}},
            },
        },
        source="<faulty workflow>",
    )


def faulty_handler(seed: int) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """Job code that sleeps a little and fails now and then, the same way for the same run,
    job and attempt."""

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        rng = random.Random(f"{seed}/{event['run_id']}/{event['job']}/{event['attempt']}")
        time.sleep(rng.uniform(0, 0.02))
        if rng.random() < FAILURE_RATE:
            raise RuntimeError(f"{event['job']} fails on purpose at attempt {event['attempt']}")
        return {"job": event["job"], "attempt": event["attempt"]}

    return handler


class _Quiet:
    def status(self, event: StatusEvent) -> None:
        return None

    def notification(self, subject: str, message: str) -> None:
        return None


def executions_against_attempts(uri: str, runs: int, progress: Progress, seed: int = 0) -> dict[str, Any]:
    """``runs`` runs of ``faulty_workflow`` under every fault; the executions of each job's code
    against its attempts, summed, and the jobs (if any) whose code ran more often."""
    definition = faulty_workflow()
    totals = {"executions": 0, "attempts": 0, "runs_succeeded": 0, "runs_failed": 0}
    faults_seen: dict[str, int] = {}
    beyond: list[dict[str, Any]] = []
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(uri, tz_aware=True)
    try:
        with scratch_databases(uri, "executions") as (database,):
            store = MongoStore(client, StoreSettings(database=database))
            for index in range(runs):
                if index % 10 == 0:
                    progress(f"executions against attempts: run {index + 1}/{runs}")
                faults = replace(FAULTS, seed=seed + index)
                handler = faulty_handler(seed + index)
                runner = LocalRunner(
                    store,
                    definition,
                    {job.name: handler for job in definition.jobs()},
                    _Quiet(),
                    RunOptions(faults=faults, timeout=60),
                )
                report = runner.run()
                totals["runs_succeeded" if report.status == "succeeded" else "runs_failed"] += 1
                for name, count in (report.faults or {}).items():
                    faults_seen[name] = faults_seen.get(name, 0) + count
                for job in report.jobs:
                    executions = job.executions or 0
                    totals["executions"] += executions
                    totals["attempts"] += job.attempts
                    if executions > job.attempts:
                        beyond.append(
                            {
                                "run": report.run_id,
                                "job": job.name,
                                "executions": executions,
                                "attempts": job.attempts,
                            }
                        )
    finally:
        client.close()
    return {
        "executions_beyond_attempts": len(beyond),
        "executions_against_attempts": {
            "runs": runs,
            "faults": "duplicate=2, reorder, crash=0.3, crash_jobs=0.2; job code fails 1 time in 5",
            "seeds": [seed, seed + runs - 1],
            **totals,
            "fault_counters": faults_seen,
            "jobs_beyond_attempts": beyond,
        },
    }
