"""The engine's decisions about ``for_each`` jobs, without I/O (``runtime.documents.items`` spells their
documents, ``runtime.service.fan_out`` carries them out).

- **Start.** When a ``for_each`` job becomes ready its expression is evaluated against
  ``{"input", "results"}``. Not an array, or more than ``MAX_ITEMS``: the job fails, saying
  so. An empty array: the job succeeds at once with the output ``[]``. Otherwise the job is
  ``dispatched`` with a ``FanOut`` of no lanes yet, and the transition carries the items
  (``FanOutStart``): they are stored in ``items`` before the run is written, and each lane is
  started once it is.
- **An item's report** moves only that item's lane (``item_verdict``): a retry under the job's
  retry budget keeps the item in its lane with the next attempt, which waits out the retry
  policy's delay (``retry_due``) as a timer of the run, like a job's retry (the one after the attempt that
  failed, so the budget counts the item's executions, whoever handles the report); its last
  report puts the lane's next item in (``next_lane``) and counts the item done or failed.
- **Stopping.** No item starts, and none is retried, once the job fails (more items failed than
  ``tolerated_failures`` allows, this report's failure included) or while the run's failure
  handlers run (``stops``): the report empties its lane and counts the lane's items after it as
  not started. Items in flight still report and are counted, after the job ended too (their
  lanes are then emptied, so an ended job shows no item running).
- **The job's end** is a status of its own, recorded once the counters say so (``job_end``):
  ``failed`` as soon as more items failed than ``tolerated_failures`` allows, or once every item
  has ended with some not started; else ``success`` with the reference to the items' outputs
  once every item has ended. It travels like any job's report, so the job completes exactly once
  (its terminal report is unique) and everything after it is decided by the engine's usual rules
  (while the failure handlers run, its failure is recorded and changes nothing else).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal

import jmespath

from runtime.definition.model import Job
from runtime.documents.items import MAX_ITEMS, FanOut, Lane, allowed_failures, items_ref, lane_items_after
from runtime.documents.run import JobRecord, Run, StatusEvent
from runtime.engine import retry
from runtime.statuses import JobState, StatusName


@dataclass(frozen=True, kw_only=True)
class FanOutStart:
    """A fan-out the transition starts: its items are stored before the run is written, and its
    lanes are started once it is."""

    job: str
    round: int
    """The job's attempt: its fan-out round (a redrive starts the next)."""
    items: tuple[Any, ...]
    concurrency: int


class UnloadedOutputs(Exception):
    """A ``when`` or ``for_each`` reads outputs kept by reference that the run has not loaded.
    Raised from deep inside a decision and caught by ``decide`` alone, which returns
    ``LoadOutputs``: it never leaves the engine."""

    def __init__(self, references: Mapping[str, str]) -> None:
        super().__init__(f"outputs kept by reference are needed: {', '.join(references)}")
        self.references = references


@dataclass(frozen=True)
class Unreadable:
    """Stands in ``Run.loaded_outputs`` for an output the orchestrator would not load, too large
    for what a ``when`` or ``for_each`` may read (``limits.OUTPUT_READ_MAX_BYTES``): why."""

    reason: str


class OutputUnreadable(Exception):
    """An expression reads an output that stands as ``Unreadable``: its evaluation fails with the
    reason, as one JMESPath cannot evaluate does (the job and the run fail)."""


@dataclass(frozen=True, kw_only=True)
class Begun:
    """A ``for_each`` job as it becomes ready: its record, and the fan-out to start (none when
    there are no items: the job has succeeded, with the output ``[]``)."""

    job: str
    record: JobRecord
    starts: tuple[FanOutStart, ...]

    @property
    def outputs(self) -> dict[str, Any]:
        """What the jobs after it see in this same decision: ``[]`` once it has succeeded."""
        return {} if self.starts else {self.job: self.record.output}


def begin(run: Run, job: Job, results: Mapping[str, Any], key: str, now: datetime) -> Begun | str:
    """``job``'s record as its fan-out starts (and what to store and start), or why it fails."""
    require_loaded(run, job.for_each or "", results)
    where = f"the for_each of {job.name!r} ({job.for_each})"
    try:
        require_readable(job.for_each or "", results)
        items = jmespath.search(job.for_each or "", {"input": run.input, "results": dict(results)})
    except Exception as exc:  # JMESPath's functions raise more than JMESPathError
        return f"{where} failed: {exc}"
    if not isinstance(items, list):
        kind = "null" if items is None else type(items).__name__
        return f"{where} gave {kind}, not an array of items"
    if len(items) > MAX_ITEMS:
        return f"{where} gave {len(items):,} items; a job fans out to at most {MAX_ITEMS:,}"
    record = run.jobs[job.name]
    attempt = record.attempt + 1
    base = JobRecord(
        state=JobState.DISPATCHED,
        attempt=attempt,
        caused_by=key,
        claimed_at=now,
        first_attempt=record.first_attempt,
    )
    if not items:
        done = JobRecord(state=JobState.SUCCEEDED, attempt=attempt, output=[], finished_at=now)
        return Begun(job=job.name, record=done, starts=())
    fan_out = FanOut(count=len(items), concurrency=job.max_concurrency)
    started = FanOutStart(job=job.name, round=attempt, items=tuple(items), concurrency=job.max_concurrency)
    return Begun(job=job.name, record=replace(base, fan_out=fan_out), starts=(started,))


def require_loaded(run: Run, expression: str, results: Mapping[str, Any]) -> None:
    """Raises ``UnloadedOutputs`` when ``expression`` reads outputs kept by reference that the run
    has not loaded (``Run.loaded_outputs``)."""
    needed = references_read(run, expression, results) if expression else {}
    if needed:
        raise UnloadedOutputs(needed)


def require_readable(expression: str, results: Mapping[str, Any]) -> None:
    """Raises ``OutputUnreadable`` when ``expression`` reads an output the orchestrator would not
    load (``Unreadable``)."""
    named = results_read(expression)
    for name, value in results.items():
        if isinstance(value, Unreadable) and (named is None or name in named):
            raise OutputUnreadable(value.reason)


def references_read(run: Run, expression: str, results: Mapping[str, Any]) -> dict[str, str]:
    """The outputs kept by reference that ``expression`` reads and the run has not loaded."""
    references = run.references
    unloaded = {
        name: ref for name, ref in references.items() if name in results and name not in run.loaded_outputs
    }
    if not unloaded:
        return {}
    named = results_read(expression)
    return unloaded if named is None else {name: ref for name, ref in unloaded.items() if name in named}


def results_read(expression: str) -> frozenset[str] | None:
    """The jobs ``expression`` reads as ``results.<job>``; None when it reads ``results`` in
    another way (``keys(results)``), so any of them."""
    names: set[str] = set()
    whole = False

    def walk(node: Mapping[str, Any]) -> None:
        nonlocal whole
        children = node.get("children", [])
        if node.get("type") == "subexpression" and len(children) >= 2:
            first, second = children[:2]
            if first.get("type") == "field" and first.get("value") == "results":
                if second.get("type") == "field":
                    names.add(str(second.get("value")))
                    return
                whole = True
        if node.get("type") == "field" and node.get("value") == "results":
            whole = True
        for child in children:
            if isinstance(child, Mapping):
                walk(child)

    walk(jmespath.compile(expression).parsed)
    return None if whole else frozenset(names)


Verdict = Literal["stale", "retry", "last"]


def item_verdict(
    event: StatusEvent, job: Job, running: bool, lane: Lane | None, stopping: bool = False
) -> Verdict:
    """What an item's report does: nothing (a duplicate, a report of an attempt its lane is no
    longer at, a job that is no longer fanning out), a retry of the item (never while
    ``stopping``), or its last report."""
    if not running or lane is None or (lane.index, lane.attempt) != (event.index, event.attempt):
        return "stale"
    retried = (
        not stopping
        and event.attempt < lane.first_attempt + job.retries
        and retry.is_retried(job.retry, event.error or "")
    )
    if event.status == StatusName.FAILED and retried:
        return "retry"
    return "last"


def retry_due(run_id: str, job: Job, event: StatusEvent, lane: Lane, now: datetime) -> datetime | None:
    """When an item's retry may start under the job's retry policy (as a job's retry does: the
    ``failures``-th failure of the item in this round waits ``delay * backoff ** (failures - 1)``,
    at most ``max_delay``, jittered from the failed attempt itself); None: at once."""
    assert event.index is not None
    failures = event.attempt - lane.first_attempt + 1
    source = retry.jitter_source(run_id, f"{job.name}[{event.index}]", event.attempt)
    delay = retry.retry_delay(job.retry, failures, source)
    return now + timedelta(seconds=delay) if delay > 0 else None


def most_failed(job: Job, fan_out: FanOut, failed: int) -> int:
    """How many items may have failed before a move that counts ``failed`` more (0 or 1) for
    the lane still to start an item: beyond it, the job fails."""
    return allowed_failures(job.tolerated_failures, fan_out.count) - failed


def stops(job: Job, fan_out: FanOut, failing: bool, failed: int) -> bool:
    """Whether a report that counts ``failed`` more items failed starts no item (its lane's next,
    or a retry): the run's failure handlers run, or the job fails with it."""
    return failing or fan_out.failed > most_failed(job, fan_out, failed)


def stopped_lane(after: int, fan_out: FanOut) -> tuple[Lane, int]:
    """The lane emptied once the item at ``after`` has ended (``lane - concurrency`` for a lane
    not yet started), and how many of its items it leaves not started."""
    return Lane(index=None), lane_items_after(after, fan_out.concurrency, fan_out.count)


def next_lane(
    after: int, found: tuple[int, int] | None, fan_out: FanOut, key: str, now: datetime
) -> tuple[Lane, int]:
    """The lane once the item at ``after`` (``lane - concurrency`` for a lane not yet started)
    has ended: with ``found`` (the lane's next item that has not succeeded, and the attempt it
    gets), or with nothing left. Also how many items of the lane it skipped, which succeeded in
    an earlier round and count as done."""
    step = fan_out.concurrency
    if found is None:
        return Lane(index=None), lane_items_after(after, step, fan_out.count)
    index, attempt = found
    lane = Lane(index=index, attempt=attempt, first_attempt=attempt, caused_by=key, claimed_at=now)
    return lane, (index - after) // step - 1


def job_end(
    run_id: str, workflow: str, job: Job, round_number: int, fan_out: FanOut, last_error: str | None
) -> StatusEvent | None:
    """The fan-out job's own report once its counters call for one: ``failed`` once more items
    failed than it tolerates, or once all ended with some not started; ``success`` (its output:
    the items', by reference) once all ended."""
    allowed = allowed_failures(job.tolerated_failures, fan_out.count)
    end = StatusEvent(
        run_id=run_id,
        workflow=workflow,
        status=StatusName.SUCCESS,
        phase=job.phase,
        job=job.name,
        attempt=round_number,
    )
    if fan_out.failed > allowed:
        error = (
            f"{fan_out.failed} of {fan_out.count} items of {job.name!r} failed, more than the {allowed} "
            "it tolerates"
        )
        if last_error:
            error += f"; the last: {last_error}"
        return replace(end, status=StatusName.FAILED, error=error)
    if fan_out.finished and fan_out.not_started:
        error = (
            f"{fan_out.not_started} of {fan_out.count} items of {job.name!r} were not started: the run "
            "failed first"
        )
        return replace(end, status=StatusName.FAILED, error=error)
    if fan_out.finished:
        return replace(end, output_ref=items_ref(run_id, job.name))
    return None
