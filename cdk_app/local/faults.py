"""Fault injection for the engine: crashes at the points where a handler touches the world.

A handler is made to "crash" by raising ``InjectedCrash`` just before or just after one of its
writes (each write of the ``RunStore`` port) or dispatches, which is where a real Lambda dying
mid-way leaves MongoDB in a state the redelivered event must cope with. The job wrapper's writes
can crash the same way; faults are never injected inside job code.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar

from runtime.documents.events import JobEvent
from runtime.documents.items import ClaimedItem, FailedItem, Lane, LaneView
from runtime.documents.leases import Lease
from runtime.documents.listing import PagePosition, RunSummary
from runtime.documents.run import Fields, JobRecord, Run, StatusEvent
from runtime.documents.signatures import StatusKeys
from runtime.ports import (
    Dispatcher,
    ItemStore,
    JobLimitStore,
    NotificationClaims,
    RunStore,
    SentEvents,
    SlotStore,
)
from runtime.statuses import RunState, StatusName

T = TypeVar("T")


class InjectedCrash(RuntimeError):
    """A crash injected on purpose; the caller redelivers the event, as Lambda would."""


class CrashPlan(Protocol):
    def check(self, point: str) -> None:
        """Raise ``InjectedCrash`` if the handler should die at ``point``."""


class CrashAtStep:
    """Die at the ``step``-th point (counting from 1) of the next handling, once."""

    def __init__(self, step: int) -> None:
        self.step = step
        self.seen = 0
        self.fired: str | None = None

    def check(self, point: str) -> None:
        self.seen += 1
        if self.fired is None and self.seen == self.step:
            self.fired = point
            raise InjectedCrash(f"injected crash {point}")


class RandomCrash:
    """Each point crashes with probability ``p`` (reproducible through ``rng``)."""

    def __init__(self, rng: random.Random, p: float) -> None:
        self.rng = rng
        self.p = p
        self.crashes = 0

    def check(self, point: str) -> None:
        if self.rng.random() < self.p:
            self.crashes += 1
            raise InjectedCrash(f"injected crash {point}")


class NoCrash:
    def check(self, point: str) -> None:
        return None


def _crashing_write(plan: CrashPlan, name: str, write: Callable[[], T]) -> T:
    plan.check(f"before {name}")
    result = write()
    plan.check(f"after {name}")
    return result


class CrashingStore:
    """A ``RunStore`` whose writes pass through a crash plan, before and after the real write;
    reads pass straight through."""

    def __init__(self, store: RunStore, plan: CrashPlan) -> None:
        self._store = store
        self.plan = plan

    def _write(self, name: str, write: Callable[[], T]) -> T:
        return _crashing_write(self.plan, name, write)

    def insert_run(self, run: Run) -> bool:
        return self._write("insert_run", lambda: self._store.insert_run(run))

    def read_run(self, run_id: str) -> Run | None:
        return self._store.read_run(run_id)

    def apply_transition(
        self, run_id: str, conditions: Fields, changes: Fields, earliest: Fields | None = None
    ) -> bool:
        return self._write(
            "apply_transition", lambda: self._store.apply_transition(run_id, conditions, changes, earliest)
        )

    def record_job_success(self, run_id: str, conditions: Fields, changes: Fields) -> Run | None:
        return self._write(
            "record_job_success", lambda: self._store.record_job_success(run_id, conditions, changes)
        )

    @property
    def keys(self) -> StatusKeys | None:
        return self._store.keys

    def record_status(self, event: StatusEvent) -> bool:
        return self._write("record_status", lambda: self._store.record_status(event))

    def read_status(
        self,
        run_id: str,
        phase: str | None,
        job: str | None,
        status: StatusName,
        attempt: int,
        index: int | None = None,
    ) -> StatusEvent | None:
        return self._store.read_status(run_id, phase, job, status, attempt, index)

    def read_terminal_status(
        self,
        run_id: str,
        phase: str,
        job: str,
        attempt: int,
        index: int | None = None,
        slot: str | None = None,
    ) -> StatusEvent | None:
        return self._store.read_terminal_status(run_id, phase, job, attempt, index, slot)

    def read_status_by_id(self, status_id: str) -> StatusEvent | None:
        return self._store.read_status_by_id(status_id)

    def read_statuses(self, run_id: str) -> list[StatusEvent]:
        return self._store.read_statuses(run_id)

    def read_attempt_state(self, run_id: str, job: str) -> tuple[RunState, JobRecord | None] | None:
        return self._store.read_attempt_state(run_id, job)

    def acquire_lease(self, lease: Lease) -> bool:
        return self._write("acquire_lease", lambda: self._store.acquire_lease(lease))

    def read_lease(self, lease_id: str, attempt_key: str | None = None) -> Lease | None:
        return self._store.read_lease(lease_id, attempt_key)

    def renew_lease(self, lease: Lease, attempt_key: str | None = None) -> None:
        # Not a crash point: renewals come from the heartbeat thread, which dies with the handling.
        self._store.renew_lease(lease, attempt_key)

    def find_runs(
        self,
        workflow: str | None,
        state: str | None,
        since: datetime | None,
        limit: int,
        deploy_id: str | None = None,
        position: PagePosition | None = None,
    ) -> list[RunSummary]:
        return self._store.find_runs(workflow, state, since, limit, deploy_id, position)

    def stale_runs(self, updated_before: datetime, limit: int, workflow: str | None = None) -> list[str]:
        return self._store.stale_runs(updated_before, limit, workflow)

    def read_operations(self, since: datetime, workflow: str | None = None) -> list[StatusEvent]:
        return self._store.read_operations(since, workflow)

    def expire_statuses(self, run_id: str, expire_at: datetime | None) -> None:
        self._write("expire_statuses", lambda: self._store.expire_statuses(run_id, expire_at))

    def runs_due(self, now: datetime, limit: int, workflow: str | None = None) -> list[str]:
        return self._store.runs_due(now, limit, workflow)

    def next_wake(self, workflow: str | None = None) -> datetime | None:
        return self._store.next_wake(workflow)

    def set_wake(self, run_id: str, version: int, due: datetime | None) -> bool:
        return self._write("set_wake", lambda: self._store.set_wake(run_id, version, due))

    def items(self) -> ItemStore:
        return CrashingItems(self._store.items(), self.plan)

    def slots(self) -> SlotStore:
        return CrashingSlots(self._store.slots(), self.plan)

    def sent_events(self) -> SentEvents:
        return self._store.sent_events()

    def job_limits(self) -> JobLimitStore:
        return CrashingJobLimits(self._store.job_limits(), self.plan)


class CrashingJobLimits:
    """A job's ``JobLimitStore`` with its writes passing through the crash plan (reads pass
    straight through)."""

    def __init__(self, limits: JobLimitStore, plan: CrashPlan) -> None:
        self._limits = limits
        self.plan = plan

    def __getattr__(self, name: str) -> Any:
        return getattr(self._limits, name)

    def ticket(self, ticket: str, *args: Any) -> dict[str, Any]:
        return _crashing_write(self.plan, "make_ticket", lambda: self._limits.ticket(ticket, *args))

    def take(self, limit: str, ticket: str, concurrency: int | None, rate: int | None, window: int) -> bool:
        return _crashing_write(
            self.plan, "take_place", lambda: self._limits.take(limit, ticket, concurrency, rate, window)
        )

    def grant(self, ticket: str, now: datetime) -> bool:
        return _crashing_write(self.plan, "grant_ticket", lambda: self._limits.grant(ticket, now))

    def release(self, limit: str | None, ticket: str, now: datetime) -> None:
        _crashing_write(self.plan, "release_ticket", lambda: self._limits.release(limit, ticket, now))

    def wake_at(
        self, limit: str, at: datetime, workflow: str, job: str, key: str, limits: dict[str, Any]
    ) -> None:
        _crashing_write(
            self.plan, "wake_queue", lambda: self._limits.wake_at(limit, at, workflow, job, key, limits)
        )

    def woken(self, limit: str, at: datetime) -> bool:
        return _crashing_write(self.plan, "clear_wake", lambda: self._limits.woken(limit, at))


class CrashingSlots:
    """Run concurrency's ``SlotStore`` with taking and releasing a slot passing through the crash
    plan (reads pass straight through)."""

    def __init__(self, slots: SlotStore, plan: CrashPlan) -> None:
        self._slots = slots
        self.plan = plan

    def arrive(self, workflow: str, key: str) -> int:
        return _crashing_write(self.plan, "arrive", lambda: self._slots.arrive(workflow, key))

    def take(self, workflow: str, key: str, run_id: str, limit: int) -> bool:
        return _crashing_write(self.plan, "take_slot", lambda: self._slots.take(workflow, key, run_id, limit))

    def release(self, workflow: str, key: str, run_id: str) -> None:
        _crashing_write(self.plan, "release_slot", lambda: self._slots.release(workflow, key, run_id))

    def holders(self, workflow: str, key: str) -> list[str]:
        return self._slots.holders(workflow, key)

    def held_keys(self, workflow: str | None) -> list[tuple[str, str, list[str]]]:
        return self._slots.held_keys(workflow)

    def holder_states(self, run_ids: list[str]) -> dict[str, tuple[RunState, Any]]:
        return self._slots.holder_states(run_ids)

    def next_queued(self, workflow: str, key: str, limit: int) -> list[str]:
        return self._slots.next_queued(workflow, key, limit)

    def queued_keys(self, workflow: str | None) -> list[tuple[str, str]]:
        return self._slots.queued_keys(workflow)

    def count_queued(self, workflow: str, key: str) -> int:
        return self._slots.count_queued(workflow, key)


class CrashingItems:
    """The fan-out path's ``ItemStore`` with each write passing through the crash plan."""

    def __init__(self, items: ItemStore, plan: CrashPlan) -> None:
        self._items = items
        self.plan = plan
        self.outputs = items.outputs

    def insert_items(self, run_id: str, job: str, items: Sequence[Any], *, workflow: str) -> None:
        _crashing_write(
            self.plan, "insert_items", lambda: self._items.insert_items(run_id, job, items, workflow=workflow)
        )

    def read_lane(self, run_id: str, job: str, lane: int) -> LaneView | None:
        return self._items.read_lane(run_id, job, lane)

    def move_lane(
        self,
        run_id: str,
        job: str,
        lane: int,
        conditions: Mapping[str, Any],
        to: Lane,
        counts: Mapping[str, int],
    ) -> LaneView | None:
        return _crashing_write(
            self.plan, "move_lane", lambda: self._items.move_lane(run_id, job, lane, conditions, to, counts)
        )

    def end_item(
        self,
        run_id: str,
        job: str,
        index: int,
        state: str,
        output: Any,
        output_ref: str | None,
        error: str | None,
    ) -> None:
        _crashing_write(
            self.plan,
            "end_item",
            lambda: self._items.end_item(run_id, job, index, state, output, output_ref, error),
        )

    def claim_next(
        self, run_id: str, job: str, after: int, concurrency: int, count: int
    ) -> ClaimedItem | None:
        return _crashing_write(
            self.plan, "claim_next", lambda: self._items.claim_next(run_id, job, after, concurrency, count)
        )

    def claim_again(self, run_id: str, job: str, index: int, attempt: int) -> ClaimedItem | None:
        return _crashing_write(
            self.plan, "claim_again", lambda: self._items.claim_again(run_id, job, index, attempt)
        )

    def read_item(self, run_id: str, job: str, index: int) -> Any:
        return self._items.read_item(run_id, job, index)

    def failed_items(self, run_id: str, job: str, limit: int) -> list[FailedItem]:
        return self._items.failed_items(run_id, job, limit)


class CrashingClaims:
    """The notifier's ``NotificationClaims`` with each write passing through a crash plan: a
    crash right after the claim is the one that must not lose the message."""

    def __init__(self, claims: NotificationClaims, plan: CrashPlan) -> None:
        self._claims = claims
        self.plan = plan

    def claim_notification(
        self, event: StatusEvent, request_id: str, retry_after: timedelta, lease: timedelta
    ) -> bool:
        return _crashing_write(
            self.plan,
            "claim_notification",
            lambda: self._claims.claim_notification(event, request_id, retry_after, lease),
        )

    def notification_sent(self, event: StatusEvent) -> None:
        _crashing_write(self.plan, "notification_sent", lambda: self._claims.notification_sent(event))

    def release_notification(self, event: StatusEvent, request_id: str) -> None:
        _crashing_write(
            self.plan, "release_notification", lambda: self._claims.release_notification(event, request_id)
        )


class CrashingDispatcher:
    """A Dispatcher that may die before or after each dispatch."""

    def __init__(self, dispatcher: Dispatcher, plan: CrashPlan) -> None:
        self._dispatcher = dispatcher
        self.plan = plan

    def dispatch(self, event: JobEvent) -> None:
        self.plan.check(f"before dispatching {event.job}#{event.attempt}")
        self._dispatcher.dispatch(event)
        self.plan.check(f"after dispatching {event.job}#{event.attempt}")
