"""The documents of ``for_each`` jobs, and the one place their shape is spelled.

A fan-out job's items live outside the run document, one document each in the ``items`` collection
(``{runId, workflow, job, index, item | itemJson, state, attempt, output | outputRef, error}``, unique on
``runId, job, index``; ``itemJson`` holds an item MongoDB would not store as it is,
``runtime.documents.outputs.stored_as_is``, as JSON text), so the run document stays small however
many items there are. The run document holds only the job's ``FanOut``: the item count, how many
are done and failed, and one ``Lane`` per slot of ``max_concurrency``. Items are dealt to the
lanes round-robin (lane ``s`` runs items ``s``, ``s + C``, ``s + 2C``, ... one after the other),
so at most ``C`` items are in flight, and an item's end moves its own lane on with one conditional
write that no other item's end contends with. That write is guarded by the lane still holding that
item at that attempt, so a duplicate of the report changes nothing.

Standard library only: the handlers import it inside Lambda.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from runtime.clock import as_utc
from runtime.definition.model import Tolerance
from runtime.documents import ID, WORKFLOW
from runtime.documents.outputs import ITEMS_REF, stored_as_is
from runtime.statuses import ItemState, JobState, RunState

MAX_ITEMS = 10_000
"""Items one ``for_each`` job may have: past it the job fails, saying so."""

FAILED_ITEMS_SHOWN = 20
"""Failed items of one job that ``status``, the run's summary and the console list (the first by
index); the count of all is in the job's counters."""

RUN_ID, JOB, INDEX, ITEM, STATE, ATTEMPT = "runId", "job", "index", "item", "state", "attempt"
OUTPUT, OUTPUT_REF, ERROR = "output", "outputRef", "error"
ITEM_JSON = "itemJson"
ITEM_FIELDS = {ITEM: 1, ITEM_JSON: 1}
"""The projection that reads an item's value (``item_value``)."""
NOT_STARTED = "notStarted"
"""The counter of a fan-out's items that no lane started (``FanOut.not_started``)."""
RUN_FAILURE = "failure"
"""The run document's failure record (``runtime.documents.run``): set while its handlers run."""
DUE_AT = "dueAt"
ITEM_KEY = (RUN_ID, JOB, INDEX)
"""The unique key of ``items``."""


@dataclass(frozen=True, kw_only=True)
class Lane:
    """One slot of a fan-out: the item it runs now, or none once its items are all done."""

    index: int | None
    """The item in flight; None: the lane has no item left."""
    attempt: int = 0
    first_attempt: int = 1
    """The first attempt of the item's retry budget in this round (a redrive starts a new one)."""
    caused_by: str | None = None
    """Key of the event whose handling put this item (at this attempt) in the lane."""
    claimed_at: datetime | None = None
    due_at: datetime | None = None
    """Set while the item waits out its retry policy's delay before this attempt: a timer of the
    run (``runtime.engine.timers``) dispatches it then."""

    @property
    def waiting(self) -> bool:
        return self.index is not None and self.due_at is not None

    def holds(self, index: int | None, attempt: int) -> bool:
        """The lane runs item ``index`` at ``attempt`` now."""
        return (self.index, self.attempt) == (index, attempt)

    def to_document(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "attempt": self.attempt,
            "first": self.first_attempt,
            "causedBy": self.caused_by,
            "claimedAt": self.claimed_at,
            DUE_AT: self.due_at,
        }


@dataclass(frozen=True, kw_only=True)
class FanOut:
    """A ``for_each`` job's record in the run document: counters and its lanes, never its items."""

    count: int
    concurrency: int
    done: int = 0
    """Items that succeeded."""
    failed: int = 0
    """Items whose last attempt failed."""
    not_started: int = 0
    """Items no lane started because the job failed (more items failed than it tolerates), the
    run's failure handlers run or the run ended: they count as ended, so the job ends (an attempt
    that reached its wrapper too late to run counts here too)."""
    lanes: Mapping[int, Lane] = field(default_factory=dict)
    """Lane number -> what it runs; a lane not yet started has no entry."""

    @property
    def lane_count(self) -> int:
        return min(self.count, self.concurrency)

    def holds(self, index: int, attempt: int) -> bool:
        """The lane of item ``index`` runs it at ``attempt`` now."""
        lane = self.lanes.get(lane_of(index, self.concurrency))
        return lane is not None and lane.holds(index, attempt)

    @property
    def running(self) -> int:
        """Items in flight (not those waiting to be retried)."""
        return sum(1 for lane in self.lanes.values() if lane.index is not None and lane.due_at is None)

    @property
    def waiting(self) -> int:
        """Items waiting out their retry delay."""
        return sum(1 for lane in self.lanes.values() if lane.waiting)

    @property
    def finished(self) -> bool:
        return self.done + self.failed + self.not_started >= self.count

    def summary(self) -> str:
        """``312/1000 done, 2 failed, 100 running`` (with ``, 3 waiting to retry`` while items wait
        out a retry delay, and ``, 586 not started`` once the job or the run has failed with items
        left): what the local runner and ``status`` show."""
        summary = f"{self.done}/{self.count} done, {self.failed} failed, {self.running} running"
        summary += f", {self.waiting} waiting to retry" if self.waiting else ""
        return summary + (f", {self.not_started} not started" if self.not_started else "")

    def to_document(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "concurrency": self.concurrency,
            "done": self.done,
            "failed": self.failed,
            NOT_STARTED: self.not_started,
            "lanes": {str(number): lane.to_document() for number, lane in self.lanes.items()},
        }


def lane_from_document(document: Mapping[str, Any]) -> Lane:
    return Lane(
        index=document.get("index"),
        attempt=document.get("attempt", 0),
        first_attempt=document.get("first", 1),
        caused_by=document.get("causedBy"),
        claimed_at=document.get("claimedAt"),
        due_at=as_utc(document.get(DUE_AT)),
    )


def fan_out_from_document(document: Mapping[str, Any]) -> FanOut:
    return FanOut(
        count=document["count"],
        concurrency=document["concurrency"],
        done=document.get("done", 0),
        failed=document.get("failed", 0),
        not_started=document.get(NOT_STARTED, 0),
        lanes={
            int(number): lane_from_document(lane) for number, lane in (document.get("lanes") or {}).items()
        },
    )


def allowed_failures(tolerated: int | str | Tolerance, count: int) -> int:
    """How many items may fail for good before the job fails: ``N``, or ``P%`` of ``count``
    (rounded down, so ``5%`` of 10 items is 0), or the fewer of a count and a percentage."""
    if isinstance(tolerated, Tolerance):
        bounds = [tolerated.count] if tolerated.count is not None else []
        if tolerated.percent is not None:
            bounds.append(count * tolerated.percent // 100)
        return min(bounds, default=0)
    if isinstance(tolerated, str):
        return count * int(tolerated.rstrip("%")) // 100
    return tolerated


def lane_of(index: int, concurrency: int) -> int:
    return index % concurrency


def lane_items_after(index: int, concurrency: int, count: int) -> int:
    """How many items the lane of ``index`` has after it."""
    return len(range(index + concurrency, count, concurrency))


def items_ref(run_id: str, job: str) -> str:
    """The reference of a fan-out job's output: its items' outputs, in index order."""
    return f"{ITEMS_REF}:{run_id}/{job}"


# -- field paths in the run document -------------------------------------------------------------


def fan_out_field(job: str, name: str | None = None) -> str:
    base = f"jobs.{job}.fanOut"
    return base if name is None else f"{base}.{name}"


def lane_field(job: str, lane: int) -> str:
    return fan_out_field(job, f"lanes.{lane}")


def lane_projection(job: str, lane: int) -> dict[str, int]:
    """What an item's report reads of the run: the run's and the job's state, the counters and
    the item's own lane, so its cost does not grow with the items, the lanes or the jobs."""
    return {
        "status": 1,
        f"jobs.{job}.state": 1,
        f"jobs.{job}.attempt": 1,
        RUN_FAILURE: 1,
        **{fan_out_field(job, name): 1 for name in ("count", "concurrency", "done", "failed", NOT_STARTED)},
        lane_field(job, lane): 1,
    }


def lane_holds(job: str, lane: int, index: int, attempt: int) -> dict[str, Any]:
    """The job is still fanning out and the lane still runs that item at that attempt."""
    return {
        "status": "running",
        f"jobs.{job}.state": "dispatched",
        f"{lane_field(job, lane)}.index": index,
        f"{lane_field(job, lane)}.attempt": attempt,
    }


def lane_settles(job: str, lane: int, index: int, attempt: int) -> dict[str, Any]:
    """The job no longer fans out (it ended, or the run did) and the lane still runs that item at
    that attempt: the item's end empties the lane and settles the counters."""
    return {
        "$or": [{"status": {"$ne": RunState.RUNNING.value}}, {f"jobs.{job}.state": {"$ne": "dispatched"}}],
        f"{lane_field(job, lane)}.index": index,
        f"{lane_field(job, lane)}.attempt": attempt,
    }


def lane_waits(job: str, lane: int) -> dict[str, Any]:
    """The lane's item waits out a retry delay."""
    return {f"{lane_field(job, lane)}.{DUE_AT}": {"$ne": None}}


def lane_may_start(job: str, most_failed: int) -> dict[str, Any]:
    """What a move that starts an item (or an item's retry) also needs: the run's failure
    handlers do not run, and no more than ``most_failed`` items have failed (so, with the failure
    the move counts, the job tolerates them all)."""
    return {RUN_FAILURE: None, fan_out_field(job, "failed"): {"$lte": most_failed}}


def lane_unstarted(job: str, round_number: int, lane: int) -> dict[str, Any]:
    """The job is fanning out in ``round_number`` and the lane has not been started."""
    return {
        "status": "running",
        f"jobs.{job}.state": "dispatched",
        f"jobs.{job}.attempt": round_number,
        lane_field(job, lane): {"$exists": False},
    }


# -- item documents --------------------------------------------------------------------------------


def item_id(run_id: str, job: str, index: int) -> str:
    """An item document's ``_id``: every read and write of one item is a point operation."""
    return f"{run_id}/{job}/{index}"


def item_documents(run_id: str, workflow: str, job: str, items: list[Any]) -> list[dict[str, Any]]:
    """The items of a fan-out of a run of ``workflow`` (by which its read view holds them)."""
    return [
        {
            ID: item_id(run_id, job, index),
            RUN_ID: run_id,
            WORKFLOW: workflow,
            JOB: job,
            INDEX: index,
            **({ITEM: item} if stored_as_is(item) else {ITEM_JSON: json.dumps(item)}),
            STATE: ItemState.PENDING,
            ATTEMPT: 0,
        }
        for index, item in enumerate(items)
    ]


def item_value(document: Mapping[str, Any]) -> Any:
    """The item an item document holds, as the ``for_each`` expression gave it."""
    text = document.get(ITEM_JSON)
    return json.loads(text) if isinstance(text, str) else document.get(ITEM)


def item_filter(run_id: str, job: str, index: int) -> dict[str, Any]:
    return {ID: item_id(run_id, job, index)}


def unfinished_item(run_id: str, job: str, index: int) -> dict[str, Any]:
    """Item ``index`` unless it has succeeded (a redrive runs again only the others)."""
    return {**item_filter(run_id, job, index), STATE: {"$ne": ItemState.SUCCEEDED}}


def item_ended(state: str, output: Any, output_ref: str | None, error: str | None) -> dict[str, Any]:
    """What an item's last report writes to its document (its ``attempt`` is the last one
    handed out, which a redrive goes on from)."""
    fields: dict[str, Any] = {STATE: state, ERROR: error}
    if output_ref is not None:
        fields[OUTPUT_REF] = output_ref
    else:
        fields[OUTPUT] = output
    return fields


@dataclass(frozen=True, kw_only=True)
class LaneView:
    """What an item's report reads of the run: is it still fanning out, its counters, one lane."""

    running: bool
    """The run is running and the job is fanning out."""
    failing: bool
    """The run's failure handlers run (it has a failure): no item starts."""
    round: int
    fan_out: FanOut
    lane: Lane | None


@dataclass(frozen=True, kw_only=True)
class ClaimedItem:
    index: int
    attempt: int
    """The attempt it is handed out with: one more than the last handed out, or (a retry) than
    the attempt that failed."""
    value: Any


def lane_view(document: Mapping[str, Any], job: str, lane: int) -> LaneView | None:
    """What ``lane_projection`` read of a run document; None when the job is not fanning out."""
    record = (document.get("jobs") or {}).get(job) or {}
    fan_out = record.get("fanOut")
    if fan_out is None:
        return None
    lanes = fan_out.get("lanes") or {}
    return LaneView(
        running=document.get("status") == RunState.RUNNING.value
        and record.get(STATE) == JobState.DISPATCHED.value,
        failing=document.get(RUN_FAILURE) is not None,
        round=record.get(ATTEMPT, 0),
        fan_out=fan_out_from_document({**fan_out, "lanes": {}}),
        lane=lane_from_document(lanes[str(lane)]) if str(lane) in lanes else None,
    )


@dataclass(frozen=True, kw_only=True)
class FailedItem:
    """An item whose last attempt failed: where it is, what it was and why it failed."""

    index: int
    item: Any
    error: str | None

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "item": self.item, "error": self.error}

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> FailedItem:
        return cls(index=document["index"], item=document.get("item"), error=document.get("error"))


def failed_items_filter(run_id: str, job: str) -> dict[str, Any]:
    """Selects the items of the run's fan-out ``job`` whose last attempt failed."""
    return {**job_items_filter(run_id, job), STATE: ItemState.FAILED}


FAILED_ITEM_PROJECTION = {INDEX: 1, ITEM: 1, ITEM_JSON: 1, ERROR: 1}


def failed_item_from_document(document: Mapping[str, Any]) -> FailedItem:
    return FailedItem(index=document[INDEX], item=item_value(document), error=document.get(ERROR))


def next_item_attempt() -> dict[str, Any]:
    """The update that takes an item's next attempt number."""
    return {"$inc": {ATTEMPT: 1}}


def item_attempt_reached(attempt: int) -> dict[str, Any]:
    """The update that records an item's retry at ``attempt`` (its document's ``attempt`` is
    the last handed out: it never goes down, and repeating this changes nothing)."""
    return {"$max": {ATTEMPT: attempt}}


def run_items_filter(run_id: str) -> dict[str, Any]:
    """Selects every item of the run."""
    return {RUN_ID: run_id}


def job_items_filter(run_id: str, job: str) -> dict[str, Any]:
    """Selects every item of the run's fan-out ``job``."""
    return {RUN_ID: run_id, JOB: job}
