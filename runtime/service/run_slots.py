"""Run concurrency as use cases: a run of a workflow with ``concurrency`` (or a scheduled run
under its ``schedule_overlap``, which shares one slot with the workflow's other scheduled runs)
starts ``queued`` and runs only while it holds one of its key's slots
(``runtime.documents.slots``; which slots and rule: ``runtime.engine.queue.admission``).

- ``admit``: where a run starts (``start_run``), after its queued document is inserted: the
  queue's head runs take the free slots and start (``on_limit: queue``); a run that finds none
  ends at once (``skip``), or has the oldest running runs of its key cancelled to free theirs
  (``cancel_oldest``), or waits unless another run waits already (``buffer_one``).
- ``release``: where a run ends (the orchestrator, after the decision that ended it is written,
  and again on every event that reaches the ended run): its slot goes back and the queue's head
  starts. Only a run's start and its end do slot work, never a job's report.
- ``repair``: the reconciler's: a slot held by a run that has ended (the releaser crashed, its
  event was lost) is released, a queued run left holding a slot (the promoter crashed) starts,
  and queued runs take the slots that are free (and a ``buffer_one`` key keeps one waiting).

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
from runtime.engine.queue import SCHEDULED_KEY, Admission, admission, plan_end_queued, plan_start
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


@dataclass(frozen=True, kw_only=True)
class SlotRepair:
    """What ``repair`` did."""

    released: int = 0
    """Slots held by runs that had ended (or no longer exist), given back."""
    started: int = 0
    """Queued runs started."""


def admit(store: RunStore, run: Run) -> None:
    """Decide the start of ``run``, queued under its key, by its rule's ``on_limit``;
    repeatable (a start repeated with the same run id admits it again, changing nothing)."""
    key = run.concurrency_key
    rule = admission(run.definition, key)
    if rule is None or key is None:
        return
    if rule.on_limit == "skip":
        if store.slots().take(run.workflow, key, run.run_id, rule.limit):
            start(store, run.workflow, key, run.run_id, run)
            return
        end_queued(
            store, run, rule.setting, f"skipped: {rule.limit} {_whose(key)} were running ({rule.rule})"
        )
        return
    promote(store, run.workflow, key)
    if rule.on_limit == "cancel_oldest":
        cancel_oldest(store, run.workflow, key, rule)
    elif rule.on_limit == "buffer_one":
        keep_one_waiting(store, run.workflow, key)


def _whose(key: str) -> str:
    """The runs holding the slots of ``key``, in messages."""
    return "scheduled run(s)" if key == SCHEDULED_KEY else f"run(s) with concurrency key {key}"


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
        rule = None if run is None else admission(run.definition, key)
        if run is None or rule is None:
            break
        if not slots.take(workflow, key, run.run_id, rule.limit):
            break
        if start(store, workflow, key, run.run_id, run):
            started.append(run.run_id)
    return started


def release(store: RunStore, run: Run) -> None:
    """The ended ``run`` gives its slot back and the queue's head starts (under ``cancel_oldest``,
    the runs still queued have as many running ones asked to cancel); repeatable."""
    key = run.concurrency_key
    rule = admission(run.definition, key)
    if rule is None or key is None:
        return
    store.slots().release(run.workflow, key, run.run_id)
    promote(store, run.workflow, key)
    if rule.on_limit == "cancel_oldest":
        cancel_oldest(store, run.workflow, key, rule)


def slot_for_redrive(store: RunStore, run: Run, event: StatusEvent) -> bool:
    """A redrive reopens an ended run, which must hold a slot again first: whether it does (or
    needs none). One that finds every slot held waits: the reconciler applies the redrive, which
    it finds unapplied, once a slot is free."""
    key = run.concurrency_key
    rule = admission(run.definition, key)
    if rule is None or key is None or run.state not in REDRIVABLE or event.attempt != run.redrives + 1:
        return True
    return store.slots().take(run.workflow, key, run.run_id, rule.limit)


def _redrive_pending(store: RunStore, run_id: str) -> bool:
    """An ended run holding a slot for a redrive asked for and not applied yet (recently)."""
    run = store.read_run(run_id)
    if run is None or run.state not in REDRIVABLE:
        return False
    request = store.read_status(run_id, None, None, StatusName.REDRIVE_REQUESTED, run.redrives + 1)
    return (
        request is not None and request.date is not None and age(request.date, utcnow()) < REDRIVE_KEEPS_SLOT
    )


def cancel_oldest(store: RunStore, workflow: str, key: str, rule: Admission) -> None:
    """``on_limit: cancel_oldest`` (and ``schedule_overlap: cancel_other``): with N runs of the
    key queued, the N oldest running ones are asked to cancel (a cancel already asked for is not
    asked again); each frees its slot when it has ended, and the queue's head takes it."""
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
            newer = "scheduled run" if key == SCHEDULED_KEY else f"run of concurrency key {key}"
            request_cancel(store, run_id, f"a newer {newer} is queued ({rule.setting})")
        except OperationRefused:
            continue  # it ended meanwhile, and frees its slot itself


def keep_one_waiting(store: RunStore, workflow: str, key: str) -> None:
    """``schedule_overlap: buffer_one``: of the runs queued under ``key``, the first waits and
    the others end skipped. Two starting at once may both find themselves first (each inserted
    before the other looked); the next admission of the key, or the reconciler, ends the later."""
    slots = store.slots()
    if len(slots.next_queued(workflow, key, 2)) < 2:
        return
    waiting, *later = slots.next_queued(workflow, key, MAX_PROMOTIONS)
    for run_id in later:
        run = store.read_run(run_id)
        rule = None if run is None else admission(run.definition, key)
        if run is None or rule is None or rule.on_limit != "buffer_one":
            continue
        error = f"skipped: a scheduled run was running and {waiting} was waiting already ({rule.rule})"
        end_queued(store, run, rule.setting, error)


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
        keep_one_waiting(store, slot_workflow, key)
    return SlotRepair(released=released, started=started)
