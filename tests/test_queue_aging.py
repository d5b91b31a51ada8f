"""Priority ages in the run queue (issue 28: "no starvation: priority ages"): a queued run gains
one point of priority for each ``PRIORITY_AGING`` it waits, so a stream of higher-priority runs
passes a low-priority one only while they arrive within as many minutes of it as their priority
is above its own. On a real MongoDB server, the clock set through ``runtime.clock.time_from``."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pymongo
import pytest

from runtime.clock import time_from
from runtime.definition.model import RunConcurrency
from runtime.engine.queue import PRIORITY_AGING, queue_rank
from runtime.store.mongo import MongoStore
from runtime.store.settings import StoreSettings
from tests.engine_harness import workflow
from tests.test_run_concurrency import Cloud

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def _at(moment: datetime) -> Callable[[], datetime]:
    return lambda: moment


@pytest.fixture
def store(mongo_client: pymongo.MongoClient[dict], store_settings: StoreSettings) -> MongoStore:
    store = MongoStore(mongo_client, store_settings)
    store.ensure_indexes()
    return store


def test_a_rank_gains_one_point_per_aging_period_and_compares_the_same_at_any_time() -> None:
    waited = T0 + 3 * PRIORITY_AGING
    assert queue_rank(0, T0) == queue_rank(3, waited)
    assert queue_rank(0, T0) < queue_rank(3, waited + PRIORITY_AGING)
    assert queue_rank(0, T0) > queue_rank(3, waited - PRIORITY_AGING)
    assert queue_rank(5, T0) < queue_rank(0, T0)


def test_a_low_priority_run_is_passed_only_by_the_runs_that_arrived_while_it_had_not_aged_enough(
    store: MongoStore,
) -> None:
    definition = workflow(
        f"aging_{uuid.uuid4().hex[:8]}",
        {"p": {"a": {}}},
        concurrency=RunConcurrency(limit=1),
        priority="input.p",
    )
    cloud = Cloud(store, definition)
    arrivals: dict[str, str] = {}
    with time_from(_at(T0 - timedelta(seconds=1))):
        first = cloud.start({"p": 0})
    with time_from(_at(T0)):
        arrivals[cloud.start({"p": 0})] = "low"
    for minute in range(1, 7):  # a high-priority run every minute after it
        with time_from(_at(T0 + minute * PRIORITY_AGING)):
            arrivals[cloud.start({"p": 3})] = f"high@{minute}"
    cloud.held_back = set(arrivals)

    order: list[str] = []
    current = first
    for _ in arrivals:
        cloud.settle([current])
        (current,) = [run_id for run_id, state in cloud.states().items() if state == "running"]
        cloud.held_back.discard(current)
        order.append(arrivals[current])

    # Priority 3 is three minutes' head start: the runs of minutes 1 and 2 go first; the one of
    # minute 3 ranks even with the low run, which arrived first.
    assert order == ["high@1", "high@2", "low", "high@3", "high@4", "high@5", "high@6"]
