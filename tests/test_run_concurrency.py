"""Run concurrency (issue 28, item 1): a workflow's ``concurrency: {limit, key}``, ``priority`` and
``on_limit``, on a real MongoDB server, under duplicated and reordered delivery and crashes
between a run's end and the release of its slot. The limit is checked from the statuses log (no
two runs' ``workflow_started`` to end overlap more than ``limit`` deep) and from the run
documents after every delivery, not from the slot documents' counters."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pymongo
import pytest

from cdk_app.local.atlas_events import envelope
from cdk_app.local.faults import CrashAtStep, CrashingStore, CrashPlan, InjectedCrash
from runtime.definition.model import RunConcurrency, Workflow
from runtime.errors import RunError
from runtime.handlers.job import stub_handler
from runtime.service.job_attempt import run_attempt
from runtime.service.operations import request_cancel, request_redrive
from runtime.service.orchestrator import Orchestrator
from runtime.service.reconciler import Reconciler
from runtime.service.runs import start_run
from runtime.statuses import ORCHESTRATOR_STATUSES, RUN_ENDS
from runtime.store.mongo import MongoStore
from runtime.store.settings import StoreSettings
from tests.engine_harness import CommandNames, RecordingDispatcher, workflow

pytestmark = pytest.mark.faults

ENDS = {status.value for status in RUN_ENDS.values()}


@pytest.fixture
def store(mongo_client: pymongo.MongoClient[dict], store_settings: StoreSettings) -> MongoStore:
    store = MongoStore(mongo_client, store_settings)
    store.ensure_indexes()
    return store


def limited(limit: int, key: str | None = None, **options: Any) -> Workflow:
    name = f"conc_{uuid.uuid4().hex[:8]}"
    return workflow(
        name,
        {"p": {"a": {}, "b": {"after": ["a"]}}},
        concurrency=RunConcurrency(limit=limit, key=key),
        **options,
    )


class Cloud:
    """Every run of one workflow, delivered together: statuses become orchestrator events (each
    ``duplicate`` times, shuffled when asked), dispatched attempts run through the job wrapper.
    ``check`` is called after every delivery."""

    def __init__(
        self,
        store: MongoStore,
        definition: Workflow,
        *,
        duplicate: int = 1,
        shuffle: bool = False,
        seed: int = 0,
        check: Callable[[], None] = lambda: None,
        crash_plan: Callable[[], CrashPlan] | None = None,
    ) -> None:
        self.store, self.definition = store, definition
        self.dispatcher = RecordingDispatcher()
        self.duplicate, self.shuffle, self.rng, self.check = duplicate, shuffle, random.Random(seed), check
        self.seen: set[Any] = set()
        self.run_ids: list[str] = []
        self.crash_plan = crash_plan
        """A fresh plan per handling, whose crash is followed by a redelivery (Lambda's retry)."""
        self.crashes = 0
        self.held_back: set[str] = set()
        """Runs whose events are not delivered (yet): they stay as they are."""

    def start(self, run_input: Any = None, run_id: str | None = None) -> str:
        run_id = start_run(self.store, self.definition, run_id=run_id, input=run_input).run_id
        self.run_ids.append(run_id)
        return run_id

    def orchestrator(self, store: Any = None) -> Orchestrator:
        return Orchestrator(store or self.store, self.dispatcher, redispatch_after=timedelta(0))

    def deliver(self, event: dict[str, Any], plan: CrashPlan | None = None) -> None:
        if plan is None:
            self.orchestrator().handle(event)
        else:
            self.orchestrator(CrashingStore(self.store, plan)).handle(event)
        self.check()

    def events(self, run_ids: list[str]) -> list[dict[str, Any]]:
        settings = self.store.settings
        fresh = [
            status
            for run_id in run_ids
            for status in self.store.run_statuses(run_id)
            if status["_id"] not in self.seen
        ]
        self.seen.update(status["_id"] for status in fresh)
        return [
            envelope(status, settings.database, settings.statuses_collection)
            for status in fresh
            if status["status"] in ORCHESTRATOR_STATUSES
        ]

    def settle(self, run_ids: list[str] | None = None, max_rounds: int = 500) -> None:
        """Deliver until nothing more comes, for ``run_ids`` (default: every run not held back)."""
        for _ in range(max_rounds):
            wanted = [r for r in (run_ids or self.run_ids) if r not in self.held_back]
            events = self.events(wanted) * self.duplicate
            jobs = [job for job in self.dispatcher.drain() if job.run_id not in self.held_back]
            jobs *= self.duplicate
            if not events and not jobs:
                return
            if self.shuffle:
                self.rng.shuffle(events)
                self.rng.shuffle(jobs)
            for event in events:
                try:
                    self.deliver(event, None if self.crash_plan is None else self.crash_plan())
                except InjectedCrash:
                    self.crashes += 1
                    self.deliver(event)
            for job in jobs:
                run_attempt(self.store, stub_handler, job.to_payload(), None, uuid.uuid4().hex)
                self.check()
        raise AssertionError("the runs did not settle")

    def states(self) -> dict[str, str]:
        return {run_id: self.store.load_run(run_id)["status"] for run_id in self.run_ids}  # type: ignore[index]

    def holders(self, key: str = "null") -> list[str]:
        return self.store.slots().holders(self.definition.name, key)


def most_in_flight(store: MongoStore, run_ids: list[str]) -> int:
    """The most runs in flight at once, from the statuses log: each run from its
    ``workflow_started`` (or ``workflow_redriven``) to its end (an end and a start at the same
    instant: the end first)."""
    edges: list[tuple[Any, int]] = []
    for run_id in run_ids:
        for status in store.run_statuses(run_id):
            if status["status"] in ("workflow_started", "workflow_redriven"):
                edges.append((status["date"], 1))
            elif status["status"] in ENDS:
                edges.append((status["date"], -1))
    depth = deepest = 0
    for _, step in sorted(edges):
        depth += step
        deepest = max(deepest, depth)
    return deepest


def running_at_most(cloud: Cloud, limit: int) -> Callable[[], None]:
    def check() -> None:
        running = [s for s in cloud.states().values() if s == "running"]
        assert len(running) <= limit
        assert len(cloud.holders()) <= limit

    return check


# -- the limit ---------------------------------------------------------------------------------


def test_five_starts_under_a_limit_of_two_run_two_and_queue_three(store: MongoStore) -> None:
    cloud = Cloud(store, limited(2))
    runs = [cloud.start() for _ in range(5)]

    assert [cloud.states()[run_id] for run_id in runs] == ["running", "running", "queued", "queued", "queued"]
    assert sorted(cloud.holders()) == sorted(runs[:2])
    # A queued run has not started: no workflow_started, nothing dispatched.
    assert [s["status"] for s in store.run_statuses(runs[2])] == []

    cloud.settle()

    assert set(cloud.states().values()) == {"succeeded"}
    assert cloud.holders() == []
    assert most_in_flight(store, runs) == 2


def test_ends_start_the_queued_runs_by_priority_then_arrival(store: MongoStore) -> None:
    cloud = Cloud(store, limited(1, priority="input.p"))
    first = cloud.start({"p": 0})
    queued = {
        name: cloud.start({"p": p}) for name, p in [("low1", 0), ("high1", 5), ("low2", 0), ("high2", 5)]
    }
    cloud.held_back = set(queued.values())
    order: list[str] = []
    current = first
    for _ in queued:
        cloud.settle([current])
        assert cloud.states()[current] == "succeeded"
        running = [run_id for run_id, state in cloud.states().items() if state == "running"]
        assert len(running) == 1
        current = running[0]
        cloud.held_back.discard(current)
        order.append(next(name for name, run_id in queued.items() if run_id == current))

    assert order == ["high1", "high2", "low1", "low2"]


def test_a_priority_that_is_not_an_integer_refuses_the_run_before_anything_is_written(
    store: MongoStore,
) -> None:
    definition = limited(1, priority="input.p")
    with pytest.raises(
        RunError, match=r"priority 'input.p' gives 'high' for this input; it must give an integer"
    ):
        start_run(store, definition, run_id="refused", input={"p": "high"})
    assert store.read_run("refused") is None


def test_each_key_has_its_own_limit(store: MongoStore) -> None:
    cloud = Cloud(store, limited(1, key="input.tenant"))
    a1, a2, b1 = cloud.start({"tenant": "a"}), cloud.start({"tenant": "a"}), cloud.start({"tenant": "b"})

    assert cloud.states() == {a1: "running", a2: "queued", b1: "running"}
    assert cloud.holders("a") == [a1]
    assert cloud.holders("b") == [b1]

    cloud.settle()

    assert set(cloud.states().values()) == {"succeeded"}
    assert cloud.holders("a") == cloud.holders("b") == []


def test_a_repeated_start_takes_no_second_slot(store: MongoStore) -> None:
    cloud = Cloud(store, limited(2))
    first = cloud.start(run_id="same")
    assert start_run(store, cloud.definition, run_id="same").created is False
    second = cloud.start()
    third = cloud.start()

    assert cloud.holders() == [first, second]
    assert store.load_run(third)["status"] == "queued"  # type: ignore[index]


# -- duplicates, reordering, crashes ---------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_duplicated_and_shuffled_delivery_never_runs_more_than_the_limit(
    store: MongoStore, seed: int
) -> None:
    cloud = Cloud(store, limited(2), duplicate=3, shuffle=True, seed=seed)
    cloud.check = running_at_most(cloud, 2)
    runs = [cloud.start() for _ in range(7)]

    cloud.settle()

    assert set(cloud.states().values()) == {"succeeded"}
    assert cloud.holders() == []
    assert most_in_flight(store, runs) == 2
    for run_id in runs:
        statuses = [s["status"] for s in store.run_statuses(run_id)]
        assert statuses.count("workflow_started") == 1
        assert statuses.count("workflow_succeeded") == 1


@pytest.mark.parametrize("step", range(1, 13))
def test_a_crash_at_any_write_then_redelivery_never_runs_more_than_the_limit_nor_leaks_a_slot(
    store: MongoStore, step: int
) -> None:
    cloud = Cloud(
        store, limited(2), duplicate=2, shuffle=True, seed=step, crash_plan=lambda: CrashAtStep(step)
    )
    cloud.check = running_at_most(cloud, 2)
    runs = [cloud.start() for _ in range(5)]

    cloud.settle()

    assert cloud.crashes > 0
    assert set(cloud.states().values()) == {"succeeded"}
    assert cloud.holders() == []
    assert most_in_flight(store, runs) == 2
    assert store.slots().queued_keys(cloud.definition.name) == []


@pytest.mark.parametrize(
    ("occupied", "step"), [(True, step) for step in range(1, 7)] + [(False, step) for step in range(1, 11)]
)
def test_a_start_that_crashes_at_any_write_and_is_repeated_starts_the_run_once(
    store: MongoStore, occupied: bool, step: int
) -> None:
    # Steps count the points before and after each write of the start: arrive, insert, take, and
    # when a slot is free, workflow_started and running.
    cloud = Cloud(store, limited(1))
    held = [cloud.start()] if occupied else []
    with pytest.raises(InjectedCrash):
        start_run(CrashingStore(store, CrashAtStep(step)), cloud.definition, run_id="crashed")
    cloud.start(run_id="crashed")  # the starter's retry

    assert cloud.states()["crashed"] == ("queued" if occupied else "running")
    cloud.settle()
    assert set(cloud.states().values()) == {"succeeded"}
    assert cloud.holders() == []
    assert [s["status"] for s in store.run_statuses("crashed")].count("workflow_started") == 1
    assert most_in_flight(store, [*held, "crashed"]) == 1


class CrashAt:
    """Crash at the first point named ``point``, once."""

    def __init__(self, point: str) -> None:
        self.point = point
        self.fired = False

    def check(self, point: str) -> None:
        if not self.fired and point == self.point:
            self.fired = True
            raise InjectedCrash(point)


def _end_with_a_crash(cloud: Cloud, run_id: str, point: str = "before release_slot") -> dict[str, Any]:
    """Settle ``run_id`` until the event that ends it, whose handling crashes at ``point`` (by
    default before it releases the slot): that event, for a redelivery."""
    cloud.held_back = {r for r in cloud.run_ids if r != run_id}
    for _ in range(50):
        for event in cloud.events([run_id]):
            plan = CrashAt(point)
            try:
                cloud.deliver(event, plan)
            except InjectedCrash:
                return event
        for job in cloud.dispatcher.drain():
            run_attempt(cloud.store, stub_handler, job.to_payload(), None, uuid.uuid4().hex)
    raise AssertionError("the run did not end")


def test_a_redelivery_after_a_crash_between_the_end_and_the_release_frees_the_slot_once(
    store: MongoStore,
) -> None:
    cloud = Cloud(store, limited(1))
    first, second, third = cloud.start(), cloud.start(), cloud.start()
    crashed = _end_with_a_crash(cloud, first)
    assert cloud.states() == {first: "succeeded", second: "queued", third: "queued"}
    assert cloud.holders() == [first]

    for _ in range(3):
        cloud.deliver(crashed)

    assert cloud.states() == {first: "succeeded", second: "running", third: "queued"}
    assert cloud.holders() == [second]


def test_the_reconciler_frees_a_slot_whose_release_was_lost_and_starts_the_queue(store: MongoStore) -> None:
    cloud = Cloud(store, limited(1))
    first, second = cloud.start(), cloud.start()
    _end_with_a_crash(cloud, first)  # and the event is never delivered again
    assert cloud.holders() == [first]

    reconciler = Reconciler(
        store, cloud.dispatcher, stale_after=timedelta(hours=1), workflow=cloud.definition.name
    )
    report = reconciler.reconcile_pass()

    assert (report.slots_released, report.queued_started) == (1, 1)
    assert cloud.states() == {first: "succeeded", second: "running"}
    assert cloud.holders() == [second]
    assert reconciler.reconcile_pass().slots_released == 0
    cloud.held_back = set()
    cloud.settle()
    assert cloud.states() == {first: "succeeded", second: "succeeded"}


def test_the_reconciler_starts_a_queued_run_whose_promotion_crashed(store: MongoStore) -> None:
    cloud = Cloud(store, limited(1))
    first, second = cloud.start(), cloud.start()
    # The first run ends and releases its slot; the second takes it, and the handler dies there.
    _end_with_a_crash(cloud, first, "after take_slot")
    assert cloud.states() == {first: "succeeded", second: "queued"}
    assert cloud.holders() == [second]

    Reconciler(store, cloud.dispatcher, stale_after=timedelta(hours=1)).reconcile_pass()

    assert cloud.states()[second] == "running"
    assert [s["status"] for s in store.run_statuses(second)] == ["workflow_started"]


# -- on_limit, cancel ----------------------------------------------------------------------------


def test_on_limit_skip_ends_the_new_run_cancelled_without_starting_it(store: MongoStore) -> None:
    cloud = Cloud(store, limited(1, on_limit="skip"))
    first, second = cloud.start(), cloud.start()

    assert cloud.states() == {first: "running", second: "cancelled"}
    skipped = store.load_run(second)
    assert skipped is not None
    assert skipped["error"] == (
        "skipped: 1 run(s) with concurrency key null were running (concurrency limit 1, on_limit: skip)"
    )
    assert [s["status"] for s in store.run_statuses(second)] == ["workflow_cancelled"]
    assert cloud.holders() == [first]
    cloud.settle()
    assert cloud.holders() == []
    third = cloud.start()
    assert cloud.holders() == [third]


def test_on_limit_cancel_oldest_cancels_the_oldest_run_and_starts_the_new_one(store: MongoStore) -> None:
    cloud = Cloud(store, limited(2, on_limit="cancel_oldest"))
    oldest, younger = cloud.start(), cloud.start()
    newest = cloud.start()
    assert cloud.states() == {oldest: "running", younger: "running", newest: "queued"}
    assert [s["status"] for s in store.run_statuses(oldest)] == ["workflow_started", "cancel_requested"]

    cloud.settle([oldest])

    assert cloud.states() == {oldest: "cancelled", younger: "running", newest: "running"}
    assert "on_limit: cancel_oldest" in store.load_run(oldest)["error"]  # type: ignore[index]
    cloud.settle()
    assert cloud.states() == {oldest: "cancelled", younger: "succeeded", newest: "succeeded"}


def test_a_queued_run_cancelled_ends_without_starting_and_takes_no_slot(store: MongoStore) -> None:
    cloud = Cloud(store, limited(1))
    first, second, third = cloud.start(), cloud.start(), cloud.start()
    request_cancel(store, second, "not needed")
    cloud.held_back = {first, third}
    cloud.settle([second])

    assert cloud.states() == {first: "running", second: "cancelled", third: "queued"}
    assert [s["status"] for s in store.run_statuses(second)] == ["cancel_requested", "workflow_cancelled"]
    assert store.load_run(second)["error"] == "cancelled: not needed"  # type: ignore[index]
    cloud.held_back = set()
    cloud.settle()
    assert cloud.states() == {first: "succeeded", second: "cancelled", third: "succeeded"}
    assert most_in_flight(store, [first, second, third]) == 1


def test_a_lost_cancel_of_a_queued_run_is_applied_by_the_reconciler(store: MongoStore) -> None:
    cloud = Cloud(store, limited(1))
    _, second = cloud.start(), cloud.start()
    assert cloud.states()[second] == "queued"
    request_cancel(store, second)  # the event is never delivered

    Reconciler(store, cloud.dispatcher, stale_after=timedelta(0)).reconcile_pass()

    assert cloud.states()[second] == "cancelled"


# -- redrive ------------------------------------------------------------------------------------


def test_a_redrive_takes_a_slot_and_waits_while_none_is_free(store: MongoStore) -> None:
    cloud = Cloud(store, limited(1))
    first, second = cloud.start(), cloud.start()
    request_cancel(store, first)
    cloud.held_back = {second}
    cloud.settle([first])
    assert cloud.states() == {first: "cancelled", second: "running"}
    assert cloud.holders() == [second]

    request_redrive(store, first)
    cloud.settle([first])  # every slot is held: the redrive waits, the run stays cancelled

    assert cloud.states() == {first: "cancelled", second: "running"}
    assert cloud.holders() == [second]
    cloud.held_back = set()
    cloud.settle([second])
    assert cloud.holders() == []

    Reconciler(store, cloud.dispatcher, stale_after=timedelta(0)).reconcile_pass()

    assert cloud.states() == {first: "running", second: "succeeded"}
    assert cloud.holders() == [first]
    cloud.settle()
    assert cloud.states() == {first: "succeeded", second: "succeeded"}
    assert cloud.holders() == []
    assert most_in_flight(store, [first, second]) == 1


# -- what it costs ---------------------------------------------------------------------------------


@pytest.fixture
def counted(mongo_uri: str, store: MongoStore) -> Iterator[tuple[MongoStore, CommandNames]]:
    listener = CommandNames()
    client: pymongo.MongoClient[dict] = pymongo.MongoClient(
        mongo_uri, event_listeners=[listener], tz_aware=True
    )
    client.admin.command("ping")
    yield MongoStore(client, store.settings), listener
    client.close()


def test_slot_work_is_spent_at_a_run_start_and_end_only(
    store: MongoStore, counted: tuple[MongoStore, CommandNames]
) -> None:
    measured, listener = counted
    definition = limited(1)
    cloud = Cloud(store, definition)

    listener.names.clear()
    first = start_run(measured, definition).run_id
    starts = list(listener.names)
    listener.names.clear()
    second = start_run(measured, definition).run_id
    queues = list(listener.names)
    cloud.run_ids += [first, second]
    cloud.held_back = {second}
    started = store.find_status(first, None, None, "workflow_started", 0)
    assert started is not None
    settings = store.settings
    cloud.seen.add(started["_id"])
    cloud.deliver(envelope(started, settings.database, settings.statuses_collection))
    (job,) = cloud.dispatcher.drain()
    run_attempt(store, stub_handler, job.to_payload(), None, uuid.uuid4().hex)
    success = store.find_status(first, "p", "a", "success", 1)
    ending = store.find_status(first, "p", "b", "success", 1)
    assert success is not None
    assert ending is None
    cloud.seen.add(success["_id"])

    listener.names.clear()
    Orchestrator(measured, cloud.dispatcher).handle(
        envelope(success, settings.database, settings.statuses_collection)
    )
    hot_path = list(listener.names)
    (job,) = cloud.dispatcher.drain()
    run_attempt(store, stub_handler, job.to_payload(), None, uuid.uuid4().hex)
    ending = store.find_status(first, "p", "b", "success", 1)
    assert ending is not None
    listener.names.clear()
    Orchestrator(measured, cloud.dispatcher).handle(
        envelope(ending, settings.database, settings.statuses_collection)
    )
    end = list(listener.names)

    # arrive, insert; the queue's head, its slot taken, workflow_started, running; the queue again.
    assert starts == ["findAndModify", "insert", "find", "find", "update", "insert", "update", "find"]
    # arrive, insert; the queue's head, its slot refused.
    assert queues == ["findAndModify", "insert", "find", "find", "update"]
    # A job's report that does not end the run: the same two commands as without a limit.
    assert hot_path == ["find", "update"]
    # The run's end (read, write, phase_completed, workflow_succeeded), then the slot released and
    # the queue's head started as above.
    assert end[:4] == ["find", "update", "insert", "insert"]
    assert end[4:] == ["update", "find", "find", "update", "insert", "update", "find"]
    assert cloud.states() == {first: "succeeded", second: "running"}
