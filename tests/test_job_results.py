"""A job's code sees the ``results`` its ``when`` sees: the outputs of its ``after`` jobs and of
every job of the earlier phases that succeeded. Outputs that would make its event too large for a
Lambda invocation travel by reference to the run document, and the wrapper loads them. Runs
through the real orchestrator and job wrapper on a real MongoDB server."""

from __future__ import annotations

from typing import Any

import pymongo
import pytest

from runtime import limits
from runtime.store.mongo import MongoStore
from runtime.store.settings import StoreSettings
from tests.engine_harness import Driver, workflow


@pytest.fixture
def store(mongo_client: pymongo.MongoClient[dict], store_settings: StoreSettings) -> MongoStore:
    store = MongoStore(mongo_client, store_settings)
    store.ensure_indexes()
    return store


ETL = workflow(
    "etl",
    {
        "extract": {"extract": {}, "audit": {}},
        "load": {
            "transform": {},
            "load": {"after": ["transform"], "when": "results.extract.rows > `0`"},
            "sibling": {},
        },
    },
)


def _run(store: MongoStore, padding: int) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def extract(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return {"rows": 3, "padding": "e" * padding}

    def transform(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return {"rows": 2, "padding": "t" * padding}

    def load(event: dict[str, Any], context: Any) -> dict[str, Any]:
        seen.update(event["results"])
        return {}

    outcome = Driver(store, ETL, handlers={"extract": extract, "transform": transform, "load": load}).run()
    assert outcome.run["status"] == "succeeded"
    return seen


def test_a_jobs_code_sees_the_outputs_its_when_sees(store: MongoStore) -> None:
    seen = _run(store, padding=0)

    assert sorted(seen) == ["audit", "extract", "transform"], "earlier phases' outputs, not a sibling's"
    assert seen["extract"] == {"rows": 3, "padding": ""}


def test_outputs_too_large_together_for_one_event_reach_the_code_by_reference(store: MongoStore) -> None:
    # Each output travels in events on its own; together they are more than one job event holds.
    padding = limits.OUTPUT_INLINE_MAX_BYTES - 1024
    sources = limits.JOB_EVENT_MAX_BYTES // padding + 1
    names = [f"source_{number}" for number in range(sources)]
    spec = workflow("wide", {"extract": {name: {} for name in names}, "load": {"load": {}}})
    seen: dict[str, Any] = {}

    def source(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return {"padding": event["job"][-1] * padding}

    def load(event: dict[str, Any], context: Any) -> dict[str, Any]:
        seen.update(event["results"])
        return {}

    handlers = {name: source for name in names} | {"load": load}
    outcome = Driver(store, spec, handlers=handlers).run()

    assert outcome.run["status"] == "succeeded", outcome.run.get("error")
    assert seen == {name: {"padding": name[-1] * padding} for name in names}
    load_events = [event for event in outcome.dispatched if event.job == "load"]
    assert load_events, "load was dispatched"
    assert all(limits.json_bytes(event.to_payload()) <= limits.JOB_EVENT_MAX_BYTES for event in load_events)
    assert any(ref.startswith("run:") for ref in load_events[0].references.values())
