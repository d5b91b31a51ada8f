"""What a job's code gets as ``results``: the outputs of its ``after`` jobs, and with ``results:
earlier`` what its ``when`` reads (those and every earlier phase's). Outputs that would make its
event too large for a Lambda invocation travel by reference to the run document, and the wrapper
loads them. Runs through the real orchestrator and job wrapper on a real MongoDB server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pymongo
import pytest

from runtime import limits
from runtime.definition.loader import load_workflow
from runtime.definition.model import Workflow
from runtime.store.mongo import MongoStore
from runtime.store.settings import StoreSettings
from tests.engine_harness import Driver, workflow

SPECS = Path(__file__).resolve().parent / "specs"


@pytest.fixture
def store(mongo_client: pymongo.MongoClient[dict], store_settings: StoreSettings) -> MongoStore:
    store = MongoStore(mongo_client, store_settings)
    store.ensure_indexes()
    return store


def _etl(results: str) -> Workflow:
    return workflow(
        "etl",
        {
            "extract": {"extract": {}, "audit": {}},
            "load": {
                "transform": {},
                "load": {"after": ["transform"], "when": "results.extract.rows > `0`", "results": results},
                "sibling": {},
            },
        },
    )


def _run(store: MongoStore, spec: Workflow) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def extract(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return {"rows": 3}

    def transform(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return {"rows": 2}

    def load(event: dict[str, Any], context: Any) -> dict[str, Any]:
        seen.update(event["results"])
        return {}

    outcome = Driver(store, spec, handlers={"extract": extract, "transform": transform, "load": load}).run()
    assert outcome.run["status"] == "succeeded"
    return seen


def test_by_default_a_jobs_code_sees_the_outputs_of_its_after_jobs(store: MongoStore) -> None:
    seen = _run(store, _etl("after"))

    assert seen == {"transform": {"rows": 2}}


def test_with_results_earlier_a_jobs_code_sees_the_outputs_its_when_sees(store: MongoStore) -> None:
    seen = _run(store, _etl("earlier"))

    assert sorted(seen) == ["audit", "extract", "transform"], "earlier phases' outputs, not a sibling's"
    assert seen["extract"] == {"rows": 3}


@pytest.mark.parametrize("results", ["after", "earlier"])
def test_outputs_too_large_together_for_one_event_reach_the_code_by_reference(
    store: MongoStore, results: str
) -> None:
    # Each output travels in events on its own; together they are more than one job event holds.
    padding = limits.OUTPUT_INLINE_MAX_BYTES - 1024
    sources = limits.JOB_EVENT_MAX_BYTES // padding + 1
    names = [f"source_{number}" for number in range(sources)]
    settings: dict[str, Any] = {"after": names} if results == "after" else {"results": "earlier"}
    spec = workflow("wide", {"extract": {name: {} for name in names}, "load": {"load": settings}})
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


def test_results_comes_from_the_job_or_from_defaults_and_is_after_without_either() -> None:
    spec = load_workflow(SPECS / "valid" / "results_earlier.yaml")
    plain = load_workflow(SPECS / "valid" / "cross_phase_after.yaml")

    assert {job.name: job.results for job in spec.jobs()} == {
        "extract": "earlier",
        "load": "earlier",
        "audit": "after",
    }
    assert {job.results for job in plain.jobs()} == {"after"}
