"""What the run page draws, as JSON: built from the run document (its definition snapshot and
job records), its statuses and its fan-outs' failed items, and nothing else.

The page reads every name generically (a job's ``state``, a status's ``status``), so states
and statuses added later (an approval's wait, a timer) show without a change here: a job is
drawn with the class ``state-<its state>`` and its attempts are the statuses that carry its
name (a wait's, an approval's or a fan-out's with when its record says it began). Phases come
in the order they run (``Workflow.phase_order``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from cdk_app.graph import ON_EXIT_TITLE, calls
from runtime.clock import as_utc
from runtime.definition.model import Job, Phase
from runtime.documents.children import child_run_id
from runtime.documents.items import FailedItem
from runtime.documents.run import Run, StatusEvent
from runtime.engine.callbacks import awaits_callback
from runtime.statuses import (
    ANSWER_STATUSES,
    ENDED,
    REDRIVABLE,
    TERMINAL_JOB_STATUSES,
    JobState,
    RunState,
    StatusName,
)


def iso(value: datetime | None) -> str | None:
    moment = as_utc(value)
    return None if moment is None else moment.isoformat()


def _kind(job: Job) -> str:
    """What the job is: ``wait``, ``approval``, ``event``, ``invoke``, ``call``, ``http``,
    ``workflow`` (a child workflow), or ``code``."""
    if job.child_workflow is not None:
        return "workflow"
    if job.wait is not None or job.wait_until is not None:
        return "wait"
    if job.approval is not None:
        return "approval"
    if job.event is not None:
        return "event"
    if job.callback is not None and not job.callback.runs_code:
        return "callback"
    if job.invoke is not None:
        return "invoke"
    if job.call is not None:
        return "call"
    return "http" if job.http is not None else "code"


def _phase_json(
    run: Run, phase: Phase, failed_items: Mapping[str, Sequence[FailedItem]], waits: Mapping[str, str]
) -> dict[str, Any]:
    jobs = []
    for job in phase.jobs:
        record = run.jobs.get(job.name)
        jobs.append(
            {
                "name": job.name,
                "after": list(job.after),
                "when": job.when,
                "retries": job.retries,
                "timeout": job.timeout,
                "kind": _kind(job),
                "calls": calls(job),
                "message": None if job.approval is None else job.approval.message,
                "event": None if job.event is None else {"name": job.event.name, "match": job.event.match},
                "child": None
                if job.child_workflow is None or record is None or record.attempt == 0
                else {
                    "workflow": job.child_workflow.name,
                    "run_id": child_run_id(run.run_id, job.name, record.attempt),
                },
                "due_at": None if record is None else iso(record.due_at),
                "state": None if record is None else record.state.value,
                "attempt": 0 if record is None else record.attempt,
                "output": None if record is None else record.output,
                "error": None if record is None else record.error,
                "allow_failure": job.allow_failure,
                "fails_run": job.fails_run,
                "join": job.join,
                "depends": job.depends,
                "for_each": job.for_each,
                "items": None if record is None or record.fan_out is None else record.fan_out.summary(),
                "failed_items": [item.to_json() for item in failed_items.get(job.name, ())],
                "waits": waits.get(job.name),
            }
        )
    return {"name": phase.name, "next": None, "jobs": jobs}


def _phases(
    run: Run, failed_items: Mapping[str, Sequence[FailedItem]], waits: Mapping[str, str]
) -> list[dict[str, Any]]:
    order = run.definition.phase_order()
    phases = []
    for position, phase in enumerate(order):
        jobs = _phase_json(run, phase, failed_items, waits)["jobs"]
        following = order[position + 1].name if position + 1 < len(order) else None
        phases.append({"name": phase.name, "next": following, "handlers": False, "jobs": jobs})
    if run.definition.on_failure is not None:
        # The failure handlers run only when the run fails or is cancelled: their own cluster,
        # joined to no phase.
        phases.append({**_phase_json(run, run.definition.on_failure, failed_items, waits), "handlers": True})
    if run.definition.on_exit is not None:
        # The exit handlers run when the run ends, however it ends: their own cluster too.
        phases.append(
            {
                **_phase_json(run, run.definition.on_exit, failed_items, waits),
                "handlers": True,
                "title": ON_EXIT_TITLE,
            }
        )
    return phases


def _attempt_kind(job: Job | None) -> str:
    """What an attempt of ``job`` is on the timeline: its code running (``code``), a wait, an
    approval waiting for its answer, or a fan-out's items running (``fan_out``)."""
    if job is None:
        return "code"
    if job.wait is not None or job.wait_until is not None:
        return "wait"
    if job.approval is not None:
        return "approval"
    if job.event is not None:
        return "event"
    return "fan_out" if job.for_each is not None else "code"


WAITS_END = (
    StatusName.TIMER_FIRED,
    *ANSWER_STATUSES,
    StatusName.EVENT_RECEIVED,
    StatusName.CALLBACK_COMPLETED,
)
"""What ends a wait's, an approval's, an event job's or a callback's attempt: its timer, a
person's answer, its event, or its token's completion."""
ACTIVE = (JobState.DISPATCHED, JobState.WAITING)


def _attempts(run: Run, statuses: Sequence[StatusEvent]) -> list[dict[str, Any]]:
    """One entry per job attempt, in the order they started: when it started and ended, how.

    A job without code has no ``started``: a wait began waiting when it became ready, an
    approval when it asked (``approval_requested``), a fan-out when its first items were
    dispatched (the record's ``claimed_at``: the page never reads its items' reports); each
    ends with its timer, its answer or the job's own end."""
    jobs = {job.name: job for job in run.definition.jobs()}
    attempts: dict[tuple[str, int], dict[str, Any]] = {}
    started: dict[tuple[str, int], datetime] = {}
    """When each attempt started, else its first status: the order of the timeline."""

    def entry(job: str, attempt: int, phase: str | None, status: str) -> dict[str, Any]:
        return attempts.setdefault(
            (job, attempt),
            {
                "job": job,
                "phase": phase,
                "attempt": attempt,
                "kind": _attempt_kind(jobs.get(job)),
                "started": None,
                "ended": None,
                "status": status,
                "error": None,
                "items": None,
            },
        )

    for event in statuses:
        if event.job is None or event.attempt < 1 or event.index is not None:
            # A fan-out's items are its job's counts ("items"), not attempts of their own.
            continue
        found = entry(event.job, event.attempt, event.phase, event.status.value)
        if (date := as_utc(event.date)) is not None:
            started.setdefault((event.job, event.attempt), date)
        waits = found["kind"] in ("wait", "approval", "event")
        if event.status in (StatusName.STARTED, StatusName.APPROVAL_REQUESTED, StatusName.EVENT_AWAITED):
            found["started"] = iso(event.date)
            if date is not None:
                started[(event.job, event.attempt)] = date
        elif event.status in TERMINAL_JOB_STATUSES or (waits and event.status in WAITS_END):
            found["ended"], found["status"], found["error"] = iso(event.date), event.status.value, event.error
        else:
            found["status"] = event.status.value
    for name, job in jobs.items():
        record = run.jobs.get(name)
        kind = _attempt_kind(job)
        if kind == "code" or record is None or record.attempt < 1 or record.claimed_at is None:
            continue
        key = (name, record.attempt)
        if key not in attempts and record.state not in ACTIVE:
            continue  # ended without a report: a wait whose time had gone by when it was ready
        found = entry(name, record.attempt, job.phase, str(record.state.value))
        if kind == "fan_out":
            found["items"] = None if record.fan_out is None else record.fan_out.summary()
            if found["status"] == JobState.DISPATCHED.value:  # its items run: no report says so
                found["status"] = StatusName.STARTED.value
        if found["started"] is None:
            found["started"] = iso(record.claimed_at)
            started[key] = as_utc(record.claimed_at) or record.claimed_at
    never = datetime.max.replace(tzinfo=UTC)
    return sorted(attempts.values(), key=lambda found: started.get((found["job"], found["attempt"]), never))


def _history(statuses: Sequence[StatusEvent]) -> list[dict[str, Any]]:
    return [
        {
            "date": iso(event.date),
            "status": event.status.value,
            "phase": event.phase,
            "job": event.job,
            "attempt": event.attempt,
            "error": event.error,
            "reason": event.reason,
        }
        for event in statuses
        if event.index is None  # 10,000 items would be 20,000 rows: their job's counts say it
    ]


def _with_child_runs(phases: list[dict[str, Any]], statuses: Sequence[StatusEvent]) -> list[dict[str, Any]]:
    """A child workflow job's child run as its attempt's ``started`` names it: a redriven parent's
    attempt takes over the child of the attempt before, which keeps its id."""
    started = {
        (event.job, event.attempt): event.request_id
        for event in statuses
        if event.status == StatusName.STARTED
    }
    for phase in phases:
        for job in phase["jobs"]:
            child_run = started.get((job["name"], job["attempt"]))
            if job["child"] is not None and child_run:
                job["child"]["run_id"] = child_run
    return phases


def run_json(
    run: Run,
    statuses: Sequence[StatusEvent],
    allow_actions: bool,
    failed_items: Mapping[str, Sequence[FailedItem]] | None = None,
    *,
    upgrades: bool = False,
    waits: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The run page's document. ``actions`` lists what the buttons may do now, and
    ``approvals`` the approval jobs waiting for an answer, ``events`` the event jobs waiting for
    their event (an operator may send one), ``callbacks`` the callback jobs waiting for their
    token's completion (an operator may complete or fail one): all empty when the console is
    read-only, else what the run's state allows (``upgrade`` beside ``redrive`` when the console
    knows the spec folder to upgrade to). ``failed_items``: each fan-out job's items that failed
    for good (the first by index), shown under its counts. ``waits``: why jobs wait for their
    limits across runs (``runtime.service.job_limits.job_waits``), shown in the job's panel."""
    actions: list[str] = []
    approvals: list[str] = []
    events: list[str] = []
    callbacks: list[str] = []
    if allow_actions:
        if run.state == RunState.QUEUED:
            actions.append("cancel")
        if run.state == RunState.RUNNING:
            actions.append("cancel")
            approvals = [
                job.name
                for job in run.definition.jobs()
                if job.approval is not None and run.jobs[job.name].state == JobState.WAITING
            ]
            events = [
                job.name
                for job in run.definition.jobs()
                if job.event is not None and run.jobs[job.name].state == JobState.WAITING
            ]
            callbacks = [
                job.name for job in run.definition.jobs() if awaits_callback(job, run.jobs[job.name])
            ]
        if run.state in REDRIVABLE:
            actions += ["redrive", "upgrade"] if upgrades else ["redrive"]
    started = next((event.date for event in statuses if event.status == StatusName.WORKFLOW_STARTED), None)
    return {
        "run_id": run.run_id,
        "workflow": run.workflow,
        "status": run.state.value,
        "ended": run.state in ENDED,
        "phase": run.phase,
        "error": run.error,
        "redrives": run.redrives,
        "deploy_id": None if run.deployment is None else run.deployment.deploy_id,
        "parent": None
        if run.parent is None
        else {"run_id": run.parent.run_id, "workflow": run.parent.workflow, "job": run.parent.job},
        "version": run.version,
        "input": run.input,
        "started": iso(started),
        "phases": _with_child_runs(_phases(run, failed_items or {}, waits or {}), statuses),
        "attempts": _attempts(run, statuses),
        "history": _history(statuses),
        "actions": actions,
        "approvals": approvals,
        "events": events,
        "callbacks": callbacks,
    }
