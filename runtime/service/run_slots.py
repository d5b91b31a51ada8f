"""Run concurrency as use cases: a run of a workflow with ``concurrency`` starts ``queued`` and
runs only while it holds one of its key's slots (``runtime.documents.slots``).

- ``admit``: where a run starts (``start_run``), after its queued document is inserted: the
  queue's head runs take the free slots and start (``on_limit: queue``); a run that finds none
  ends at once (``skip``), or has the oldest running runs of its key cancelled to free theirs
  (``cancel_oldest``).
- ``release``: where a run ends (the orchestrator, after the decision that ended it is written,
  and again on every event that reaches the ended run): its slot goes back and the queue's head
  starts. Only a run's start and its end do slot work, never a job's report.
- ``repair``: the reconciler's: a slot held by a run that has ended (the releaser crashed, its
  event was lost) is released, a queued run left holding a slot (the promoter crashed) starts,
  and queued runs take the slots that are free.

A run starts by a conditional write (``queued`` to ``running``) after it took its slot, and a
slot is released only by a run that has ended or never started, so the runs running of a key are
never more than its limit, however the events are duplicated, reordered or lost.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from runtime.aws.telemetry import observe_queue_wait
from runtime.clock import age, utcnow
from runtime.documents.run import Run, StatusEvent
from runtime.engine.queue import plan_end_queued, plan_start
from runtime.engine.transition import Transition
from runtime.errors import OperationRefused
from runtime.ports import RunStore
from runtime.service.operations import request_cancel
from runtime.statuses import ENDED, REDRIVABLE, RunState, StatusName

log = logging.getLogger(__name__)

MAX_PROMOTIONS = 10_000
"""Bound on the runs one promotion starts: more than any limit a spec may set."""

REDRIVE_KEEPS_SLOT = timedelta(days=1)
"""How long a slot taken for a redrive stays with the ended run while the redrive is not applied
(the reconciler's look back for operations)."""

SKIPPED = "on_limit: skip"
"""The ``finishedBy`` of a run ``on_limit: skip`` ended before it started."""


@dataclass(frozen=True, kw_only=True)
class SlotRepair:
    """What ``repair`` did."""

    released: int = 0
    """Slots held by runs that had ended (or no longer exist), given back."""
    started: int = 0
    """Queued runs started."""


def admit(store: RunStore, run: Run) -> None:
    """Decide the start of ``run``, queued under its key, by its workflow's ``on_limit``;
    repeatable (a start repeated with the same run id admits it again, changing nothing)."""
    concurrency, key = run.definition.concurrency, run.concurrency_key
    if concurrency is None or key is None:
        return
    slots = store.slots()
    if run.definition.on_limit == "skip":
        if slots.take(run.workflow, key, run.run_id, concurrency.limit):
            start(store, run.workflow, key, run.run_id, run)
            return
        error = (
            f"skipped: {concurrency.limit} run(s) with concurrency key {key} were running "
            f"(concurrency limit {concurrency.limit}, on_limit: skip)"
        )
        end_queued(store, run, SKIPPED, error)
        return
    promote(store, run.workflow, key)
    if run.definition.on_limit == "cancel_oldest":
        cancel_oldest(store, run.workflow, key)


def start(store: RunStore, workflow: str, key: str, run_id: str, run: Run | None = None) -> bool:
    """Start a queued run that holds a slot: its ``workflow_started`` first, then running. The
    orchestrator's handling of that status makes the second write itself when it finds the run
    still queued (``resume_start``), so a crash between the two loses nothing. False when the
    run has ended meanwhile (cancelled while queued): its slot is released. ``run``: the run as
    just read (else it is read here)."""
    run = run or store.read_run(run_id)
    if run is None or run.state in ENDED:
        store.slots().release(workflow, key, run_id)
        return False
    store.record_status(StatusEvent(run_id=run_id, workflow=workflow, status=StatusName.WORKFLOW_STARTED))
    if run.state == RunState.QUEUED:
        plan = plan_start(run)
        if not store.apply_transition(run_id, plan.conditions, plan.changes):
            return start(store, workflow, key, run_id)
        observe_queue_wait(run)
    return True


def resume_start(store: RunStore, run: Run) -> bool:
    """The queued ``run``'s ``workflow_started`` reached the orchestrator: a start that recorded
    it and died before the run was running. Finish it while the run holds its slot; False when
    it holds none (nothing to finish)."""
    key = run.concurrency_key
    if key is None or run.run_id not in store.slots().holders(run.workflow, key):
        return False
    return start(store, run.workflow, key, run.run_id, run)


def promote(store: RunStore, workflow: str, key: str) -> list[str]:
    """Start the queue's head, run by run, while a slot is free: the ids started."""
    slots = store.slots()
    started: list[str] = []
    for _ in range(MAX_PROMOTIONS):
        head = slots.next_queued(workflow, key, 1)
        if not head:
            break
        run = store.read_run(head[0])
        if run is None or run.definition.concurrency is None:
            break
        if not slots.take(workflow, key, run.run_id, run.definition.concurrency.limit):
            break
        if start(store, workflow, key, run.run_id, run):
            started.append(run.run_id)
    return started


def release(store: RunStore, run: Run) -> None:
    """The ended ``run`` gives its slot back and the queue's head starts; repeatable."""
    key = run.concurrency_key
    if run.definition.concurrency is None or key is None:
        return
    store.slots().release(run.workflow, key, run.run_id)
    promote(store, run.workflow, key)


def slot_for_redrive(store: RunStore, run: Run, event: StatusEvent) -> bool:
    """A redrive reopens an ended run, which must hold a slot again first: whether it does (or
    needs none). One that finds every slot held waits: the reconciler applies the redrive, which
    it finds unapplied, once a slot is free."""
    key, concurrency = run.concurrency_key, run.definition.concurrency
    if concurrency is None or key is None or run.state not in REDRIVABLE or event.attempt != run.redrives + 1:
        return True
    return store.slots().take(run.workflow, key, run.run_id, concurrency.limit)


def _redrive_pending(store: RunStore, run_id: str) -> bool:
    """An ended run holding a slot for a redrive asked for and not applied yet (recently)."""
    run = store.read_run(run_id)
    if run is None or run.state not in REDRIVABLE:
        return False
    request = store.read_status(run_id, None, None, StatusName.REDRIVE_REQUESTED, run.redrives + 1)
    return (
        request is not None and request.date is not None and age(request.date, utcnow()) < REDRIVE_KEEPS_SLOT
    )


def cancel_oldest(store: RunStore, workflow: str, key: str) -> None:
    """``on_limit: cancel_oldest``: with N runs of the key queued, the N oldest running ones are
    asked to cancel (a cancel already asked for is not asked again); each frees its slot when it
    has ended, and the queue's head takes it."""
    slots = store.slots()
    queued = slots.count_queued(workflow, key)
    if not queued:
        return
    states = slots.holder_states(slots.holders(workflow, key))
    running = sorted(
        (created, run_id) for run_id, (state, created) in states.items() if state == RunState.RUNNING
    )
    for _, run_id in running[:queued]:
        try:
            request_cancel(
                store, run_id, f"a newer run of concurrency key {key} is queued (on_limit: cancel_oldest)"
            )
        except OperationRefused:
            continue  # it ended meanwhile, and frees its slot itself


def end_queued(store: RunStore, run: Run, key: str, error: str) -> bool:
    """End the queued ``run`` ``cancelled`` without starting it; False when it is no longer
    queued (it started meanwhile). Releases a slot it may hold from a promotion that lost."""
    plan: Transition = plan_end_queued(run, key, error, utcnow())
    if not store.apply_transition(run.run_id, plan.conditions, plan.changes):
        return False
    for status in plan.statuses:
        store.record_status(status)
    if plan.expiry is not None:
        store.expire_statuses(run.run_id, plan.expiry.at)
    release(store, run)
    return True


def repair(store: RunStore, workflow: str | None) -> SlotRepair:
    """The reconciler's pass over the slots (of ``workflow``; None: every workflow)."""
    slots = store.slots()
    released = started = 0
    keys: set[tuple[str, str]] = set()
    for slot_workflow, key, holders in slots.held_keys(workflow):
        keys.add((slot_workflow, key))
        states = slots.holder_states(holders)
        for run_id in holders:
            state = states.get(run_id)
            if state is None or (state[0] in ENDED and not _redrive_pending(store, run_id)):
                log.warning("reconciler: run %r had ended holding a slot of %s; released it", run_id, key)
                slots.release(slot_workflow, key, run_id)
                released += 1
            elif state[0] == RunState.QUEUED:
                started += start(store, slot_workflow, key, run_id)
    for slot_workflow, key in sorted(keys | set(slots.queued_keys(workflow))):
        started += len(promote(store, slot_workflow, key))
    return SlotRepair(released=released, started=started)
