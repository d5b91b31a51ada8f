"""A run read back from MongoDB: what ``run`` ends with and what ``status`` shows, one shape for
both (the table and ``--json``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from runtime.store import Store

JOB_REPORT_STATUS = {
    "pending": "pending",
    "dispatched": "running",
    "succeeded": "succeeded",
    "failed": "failed",
    "skipped": "skipped",
}
"""Engine job state -> what the report calls it while the run is going on."""


@dataclass(frozen=True, kw_only=True)
class JobReport:
    name: str
    phase: str
    status: str
    """``succeeded``, ``failed``, ``skipped``, ``pending``, or ``running`` while the run is."""
    attempts: int
    """The job's attempt count in the run document."""
    executions: int | None
    """How many times the runner entered the user's handler (None: not run by this process)."""
    output: Any
    error: str | None
    seconds: float | None
    """From the job's first ``started`` to its last report."""


@dataclass(frozen=True, kw_only=True)
class RunReport:
    run_id: str
    workflow: str
    status: str
    """``succeeded`` or ``failed``; ``running`` only for a run still going on."""
    phase: str
    jobs: tuple[JobReport, ...]
    error: str | None
    seconds: float | None
    faults: Mapping[str, int] | None = None
    """Fault counters of a local run (None when the run was not made by this process)."""

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` object."""
        document: dict[str, Any] = {
            "run_id": self.run_id,
            "workflow": self.workflow,
            "status": self.status,
            "jobs": {
                job.name: {
                    "status": job.status,
                    "attempts": job.attempts,
                    "executions": job.executions,
                    "output": job.output,
                }
                for job in self.jobs
            },
        }
        if self.faults is not None:
            document["faults"] = dict(self.faults)
        return document


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    return None if start is None or end is None else (end - start).total_seconds()


def summarize(
    store: Store,
    run_id: str,
    executions: Mapping[str, int] | None = None,
    faults: Mapping[str, int] | None = None,
    gave_up: str | None = None,
) -> RunReport | None:
    """The report of run ``run_id``, or None when there is no such run. ``gave_up`` is why the
    runner stopped following a run that had not finished: the run then reports as failed and
    its unfinished jobs as pending."""
    document = store.load_run(run_id)
    if document is None:
        return None
    first_started: dict[str, datetime] = {}
    last_report: dict[str, datetime] = {}
    run_started = run_ended = None
    for report in store.run_statuses(run_id):
        job, date = report["job"], report["date"]
        if job is None:
            if report["status"] == "workflow_started":
                run_started = date
            elif report["status"] in ("workflow_succeeded", "workflow_failed"):
                run_ended = date
            continue
        if report["status"] == "started":
            first_started.setdefault(job, date)
        else:
            last_report[job] = date
    ended = document["status"] != "running" or gave_up is not None
    jobs = []
    for phase in document["definition"]["phases"]:
        for job in phase["jobs"]:
            name = job["name"]
            state = document["jobs"][name]
            job_status = JOB_REPORT_STATUS[state["state"]]
            jobs.append(
                JobReport(
                    name=name,
                    phase=phase["name"],
                    status="pending" if ended and job_status == "running" else job_status,
                    attempts=state.get("attempt", 0),
                    executions=None if executions is None else executions.get(name, 0),
                    output=state.get("output"),
                    error=state.get("error"),
                    seconds=_seconds(first_started.get(name), last_report.get(name)),
                )
            )
    return RunReport(
        run_id=run_id,
        workflow=document["workflow"],
        status="failed" if gave_up is not None else document["status"],
        phase=document["phase"],
        jobs=tuple(jobs),
        error=gave_up or document.get("error"),
        seconds=_seconds(run_started, run_ended),
        faults=faults,
    )
