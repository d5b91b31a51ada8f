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
        {"p": {"prepare": {}, "charge": {"after": ["prepare"], "concurrency": JobConcurrency(limit=limit, key=key), **job}}},
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
