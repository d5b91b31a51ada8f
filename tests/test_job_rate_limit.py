"""A job's ``rate_limit`` across runs (issue 28, items 2 and 4): attempts of the job started per
window, across every run of the workflow and over a ``for_each`` job's items, on a real MongoDB
server under duplicated and reordered delivery and crashes at every write. The clock is the
test's (``runtime.clock.time_from``), so windows are exact; the starts per window are counted
from the statuses log (each attempt's ``started``), never from the limit documents."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pymongo
import pytest

from cdk_app.local.faults import CrashAtStep
from runtime.definition.model import Workflow
from runtime.definition.model_limits import JobConcurrency, RateLimit
from runtime.service.job_limits import waiting_reasons
from runtime.service.reconciler import Reconciler
from runtime.service.timers import fire_due_timers
from runtime.store.mongo import MongoStore
from runtime.store.settings import StoreSettings
from tests.engine_harness import workflow
from tests.job_limits_harness import Clock, Runs, attempts_in_flight, clock, starts_per_window

__all__ = ["clock"]  # the fixture this module shares

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


def name() -> str:
    return f"jobr_{uuid.uuid4().hex[:8]}"


def rate_limited(limit: int, period: float = 1, **job: Any) -> Workflow:
    return workflow(name(), {"p": {"charge": {"rate_limit": RateLimit(limit=limit, period=period), **job}}})


def next_window(runs: Runs, clock: Clock, seconds: float = 1) -> None:
    """Time moves on to the next window, and the timer sweep wakes the queues due."""
    clock.now += timedelta(seconds=seconds)
    fire_due_timers(runs.store, clock.now, runs.definition.name, runs.orchestrator().invoke)


def test_ten_runs_under_three_a_second_start_three_in_each_window(
    store: MongoStore, runs_of: Any, clock: Clock
) -> None:
    runs = runs_of(rate_limited(3))
    ids = [runs.start() for _ in range(10)]
    while runs.step():
        pass
    assert len(runs.attempts.held) == 3
    while runs.attempts.finish(runs.rng):
        runs.step()
    waiting = [run_id for run_id in ids if waiting_reasons(store, run_id)]
    assert len(waiting) == 7
    assert waiting_reasons(store, waiting[0]) == {("charge", None): "rate limit 3/s on charge (7 waiting)"}

    runs.settle(between=lambda: next_window(runs, clock))

    assert set(runs.states().values()) == {"succeeded"}
    assert sorted(starts_per_window(store, ids, "charge", 1).values()) == [1, 3, 3, 3]
    assert store.job_limits().held_tickets(runs.definition.name) == []


def test_a_queue_whose_window_is_full_wakes_at_the_next_window_not_before(
    store: MongoStore, runs_of: Any, clock: Clock
) -> None:
    runs = runs_of(rate_limited(2, period=10))
    ids = [runs.start() for _ in range(3)]
    while runs.step():
        pass
    while runs.attempts.finish(runs.rng):
        runs.step()
    waiting = [run_id for run_id in ids if waiting_reasons(store, run_id)]
    assert waiting_reasons(store, waiting[0]) == {("charge", None): "rate limit 2/10s on charge (1 waiting)"}

    next_window(runs, clock, 9.8)  # 12:00:09.9, still the first window
    assert runs.dispatcher.drain() == []
    next_window(runs, clock, 0.1)  # 12:00:10.0, the next

    assert [event.run_id for event in runs.dispatcher.drain()] == waiting


def test_a_fan_out_of_forty_items_starts_at_most_five_a_second(
    store: MongoStore, runs_of: Any, clock: Clock
) -> None:
    definition = workflow(
        name(),
        {
            "p": {
                "charge": {
                    "for_each": "input.customers",
                    "max_concurrency": 40,
                    "rate_limit": RateLimit(limit=5, period=1),
                }
            }
        },
    )
    runs = runs_of(definition)
    run_id = runs.start({"customers": [f"c{i}" for i in range(40)]})

    runs.settle(between=lambda: next_window(runs, clock))

    assert runs.states() == {run_id: "succeeded"}
    assert sorted(starts_per_window(store, [run_id], "charge", 1).values()) == [5] * 8
    assert store.job_limits().held_tickets(definition.name) == []


def test_concurrency_and_rate_limit_together_on_a_fan_out_hold_both(
    store: MongoStore, runs_of: Any, clock: Clock
) -> None:
    definition = workflow(
        name(),
        {
            "p": {
                "charge": {
                    "for_each": "input.customers",
                    "max_concurrency": 20,
                    "rate_limit": RateLimit(limit=4, period=1, key="item.tenant"),
                    "concurrency": JobConcurrency(limit=2, key="item.tenant"),
                }
            }
        },
    )
    runs = runs_of(definition, shuffle=True, duplicate=2, seed=3)
    customers = [{"tenant": tenant} for tenant in "ab" * 10]
    ids = [runs.start({"customers": customers}), runs.start({"customers": customers})]

    runs.settle(between=lambda: next_window(runs, clock))

    assert set(runs.states().values()) == {"succeeded"}
    assert attempts_in_flight(store, ids, "charge") <= 4  # two per tenant
    assert max(starts_per_window(store, ids, "charge", 1).values()) <= 8  # four per tenant
    assert store.job_limits().held_tickets(definition.name) == []


@pytest.mark.parametrize("step", range(1, 9))
def test_a_crash_at_any_write_never_starts_more_than_the_limit_in_a_window(
    store: MongoStore, runs_of: Any, clock: Clock, step: int
) -> None:
    runs = runs_of(
        rate_limited(2), duplicate=2, shuffle=True, seed=step, crash_plan=lambda: CrashAtStep(step)
    )
    ids = [runs.start() for _ in range(5)]

    reconciler = Reconciler(
        store,
        runs.dispatcher,
        stale_after=timedelta(0),
        lost_invocation_after=lambda job: timedelta(0),
        workflow=runs.definition.name,
    )

    def between() -> None:
        next_window(runs, clock)
        reconciler.reconcile_pass()

    runs.settle(between=between)

    assert runs.crashes > 0
    assert set(runs.states().values()) == {"succeeded"}
    assert max(starts_per_window(store, ids, "charge", 1).values()) == 2
    for run_id in ids:
        assert [s["status"] for s in store.run_statuses(run_id) if s.get("job") == "charge"] == [
            "started",
            "success",
        ]
    assert store.job_limits().held_tickets(runs.definition.name) == []
