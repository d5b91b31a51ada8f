"""A job's ``concurrency`` across runs (issue 28, items 2 and 4): attempts of the job in flight at
once, across every run of the workflow (per key when given), on a real MongoDB server under
duplicated and reordered delivery and crashes at every write. The limit is checked from the
statuses log (each attempt from its ``started`` to its end), never from the limit documents."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pymongo
import pytest

from cdk_app.local.faults import CrashAtStep
from runtime.clock import utcnow
from runtime.definition.model import Workflow
from runtime.definition.model_limits import JobConcurrency
from runtime.service.job_limits import waiting_reasons
from runtime.service.operations import request_cancel
from runtime.service.reconciler import Reconciler
from runtime.store.mongo import MongoStore
from runtime.store.settings import StoreSettings
from tests.engine_harness import workflow
from tests.job_limits_harness import Runs, attempts_in_flight

pytestmark = pytest.mark.faults


@pytest.fixture
def store(mongo_client: pymongo.MongoClient[dict], store_settings: StoreSettings) -> MongoStore:
    store = MongoStore(mongo_client, store_settings)
    store.ensure_indexes()
    return store


@pytest.fixture
def runs_of(store: MongoStore) -> Iterator[Any]:
    made: list[Runs] = []

    def make(definition: Workflow, **options: Any) -> Runs:
        runs = Runs(store, definition, **options)
        made.append(runs)
        return runs

    yield make
    for runs in made:
        runs.attempts.close()


def limited(limit: int, key: str | None = None, **job: Any) -> Workflow:
    return workflow(
        f"jobc_{uuid.uuid4().hex[:8]}",
        {
            "p": {
                "prepare": {},
                "charge": {"after": ["prepare"], "concurrency": JobConcurrency(limit=limit, key=key), **job},
            }
        },
    )


def test_six_runs_under_a_limit_of_two_never_run_more_than_two_charges_at_once(
    store: MongoStore, runs_of: Any
) -> None:
    runs = runs_of(limited(2))
    ids = [runs.start() for _ in range(6)]

    runs.settle()

    assert set(runs.states().values()) == {"succeeded"}
    assert attempts_in_flight(store, ids, "charge") == 2
    assert store.job_limits().held_tickets(runs.definition.name) == []


def test_attempts_over_the_limit_wait_undispatched_and_say_why(store: MongoStore, runs_of: Any) -> None:
    runs = runs_of(limited(2))
    ids = [runs.start() for _ in range(5)]
    while runs.step():
        pass

    assert len(runs.attempts.held) == 2
    waiting = [run_id for run_id in ids if waiting_reasons(store, run_id)]
    assert len(waiting) == 3
    assert waiting_reasons(store, waiting[0]) == {("charge", None): "concurrency 2 on charge (3 waiting)"}
    # Waiting is not failing: the job is dispatched as far as its run is concerned.
    assert store.load_run(waiting[0])["jobs"]["charge"]["state"] == "dispatched"  # type: ignore[index]


def test_each_key_has_its_own_limit(store: MongoStore, runs_of: Any) -> None:
    runs = runs_of(limited(1, key="input.tenant"))
    ids = [runs.start({"tenant": tenant}) for tenant in ("a", "a", "b", "b", "a")]
    while runs.step():
        pass

    assert len(runs.attempts.held) == 2  # one of a, one of b
    assert {name[0] for name in runs.attempts.held} <= set(ids)
    reasons = {r for run_id in ids for r in waiting_reasons(store, run_id).values()}
    assert reasons == {
        "concurrency 1 on charge with key a (2 waiting)",
        "concurrency 1 on charge with key b (1 waiting)",
    }

    runs.settle()

    assert set(runs.states().values()) == {"succeeded"}
    assert (
        attempts_in_flight(store, [i for i, t in zip(ids, "aabba", strict=True) if t == "a"], "charge") == 1
    )
    assert (
        attempts_in_flight(store, [i for i, t in zip(ids, "aabba", strict=True) if t == "b"], "charge") == 1
    )


def test_waiting_attempts_start_by_their_run_priority_then_arrival(store: MongoStore, runs_of: Any) -> None:
    # A run's priority comes with the workflow's own concurrency (its limit is not reached here).
    from runtime.definition.model import RunConcurrency

    definition = workflow(
        f"jobc_{uuid.uuid4().hex[:8]}",
        {"p": {"charge": {"concurrency": JobConcurrency(limit=1)}}},
        concurrency=RunConcurrency(limit=100),
        priority="input.p",
    )
    runs = runs_of(definition)
    first = runs.start({"p": 0, "name": "first"})
    while runs.step():
        pass
    names = {
        runs.start({"p": p, "name": name}): name
        for name, p in [("low1", 0), ("high1", 5), ("low2", 0), ("high2", 5)]
    }
    while runs.step():
        pass
    order: list[str] = []
    while runs.attempts.finish(runs.rng):
        while runs.step():
            pass
        order += [
            names[name[0]] for name in runs.attempts.held if name[0] in names and names[name[0]] not in order
        ]

    assert first not in names
    assert order == ["high1", "high2", "low1", "low2"]


@pytest.mark.parametrize("seed", range(3))
def test_duplicated_and_shuffled_delivery_never_runs_more_than_the_limit(
    store: MongoStore, runs_of: Any, seed: int
) -> None:
    runs = runs_of(limited(2), duplicate=3, shuffle=True, seed=seed)
    ids = [runs.start() for _ in range(6)]

    runs.settle()

    assert set(runs.states().values()) == {"succeeded"}
    assert attempts_in_flight(store, ids, "charge") == 2
    assert store.job_limits().held_tickets(runs.definition.name) == []
    for run_id in ids:
        assert [s["status"] for s in store.run_statuses(run_id) if s.get("job") == "charge"] == [
            "started",
            "success",
        ]


def test_a_failed_attempt_releases_its_place_and_its_retry_waits_again(
    store: MongoStore, runs_of: Any
) -> None:
    runs = runs_of(limited(1), fail=lambda event: event["attempt"] == 1)
    ids = [runs.start() for _ in range(3)]

    runs.settle()

    assert set(runs.states().values()) == {"succeeded"}
    assert attempts_in_flight(store, ids, "charge") == 1
    assert store.job_limits().held_tickets(runs.definition.name) == []


@pytest.mark.parametrize("step", range(1, 13))
def test_a_crash_at_any_write_then_redelivery_never_runs_more_than_the_limit_nor_leaks_a_place(
    store: MongoStore, runs_of: Any, step: int
) -> None:
    runs = runs_of(limited(2), duplicate=2, shuffle=True, seed=step, crash_plan=lambda: CrashAtStep(step))
    ids = [runs.start() for _ in range(4)]
    reconciler = Reconciler(
        store,
        runs.dispatcher,
        stale_after=timedelta(0),
        lost_invocation_after=lambda job: timedelta(0),
        workflow=runs.definition.name,
    )

    # A crash between a grant and its invocation leaves the attempt to the reconciler's redispatch
    # of lost invocations, which it finds when nothing else moves.
    runs.settle(between=reconciler.reconcile_pass)

    assert runs.crashes > 0
    assert set(runs.states().values()) == {"succeeded"}
    assert attempts_in_flight(store, ids, "charge") == 2
    assert store.job_limits().held_tickets(runs.definition.name) == []


def test_the_reconciler_applies_a_lost_end_and_the_waiting_attempt_starts(
    store: MongoStore, runs_of: Any
) -> None:
    runs = runs_of(limited(1))
    first, second = runs.start(), runs.start()
    while runs.step():
        pass
    # The first charge ends, and its success is never delivered (the trigger lost it).
    runs.attempts.finish(runs.rng)
    runs.events()
    assert waiting_reasons(store, second) == {("charge", None): "concurrency 1 on charge (1 waiting)"}

    reconciler = Reconciler(store, runs.dispatcher, stale_after=timedelta(0), workflow=runs.definition.name)
    reconciler.reconcile_pass()

    assert waiting_reasons(store, second) == {}
    runs.settle()
    assert runs.states() == {first: "succeeded", second: "succeeded"}
    assert attempts_in_flight(store, [first, second], "charge") == 1


def test_the_reconciler_gives_back_the_place_of_an_attempt_of_a_cancelled_run_whose_end_was_lost(
    store: MongoStore, runs_of: Any
) -> None:
    runs = runs_of(limited(1))
    first, second = runs.start(), runs.start()
    while runs.step():
        pass
    request_cancel(store, first, "no longer wanted")
    while runs.step():
        pass
    assert runs.states()[first] == "cancelled"
    # Its charge runs on (Lambda is not stopped) and ends; that end is never delivered.
    runs.attempts.finish(runs.rng)
    runs.events()
    assert waiting_reasons(store, second) != {}

    reconciler = Reconciler(store, runs.dispatcher, stale_after=timedelta(0), workflow=runs.definition.name)
    # A pass checks the places of attempts granted a while ago (a recent one's end is coming).
    assert reconciler.reconcile_pass().tickets_released == 0
    report = reconciler.reconcile_pass(utcnow() + timedelta(minutes=2))

    assert (report.tickets_released, report.waiting_started) == (1, 1)
    assert reconciler.reconcile_pass(utcnow() + timedelta(minutes=2)).tickets_released == 0
    runs.settle()
    assert runs.states() == {first: "cancelled", second: "succeeded"}
    assert attempts_in_flight(store, [first, second], "charge") == 1
    assert store.job_limits().held_tickets(runs.definition.name) == []


def test_a_cancelled_run_gives_back_its_waiting_place_and_the_next_run_starts(
    store: MongoStore, runs_of: Any
) -> None:
    runs = runs_of(limited(1))
    first, second, third = runs.start(), runs.start(), runs.start()
    while runs.step():
        pass
    request_cancel(store, second, "no longer wanted")
    while runs.step():
        pass

    runs.settle()

    assert runs.states() == {first: "succeeded", second: "cancelled", third: "succeeded"}
    assert [s["status"] for s in store.run_statuses(second) if s.get("job") == "charge"] in ([], ["not_run"])
    assert attempts_in_flight(store, [first, second, third], "charge") == 1
    assert store.job_limits().held_tickets(runs.definition.name) == []
