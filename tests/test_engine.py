"""Engine semantics end to end on a real MongoDB server, through the real handlers."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pymongo
import pytest

from runtime.store.mongo import MongoStore
from runtime.store.settings import StoreSettings
from tests.engine_harness import CATCH_THE_FISH, Driver, workflow


@pytest.fixture
def store(mongo_client: pymongo.MongoClient[dict], store_settings: StoreSettings) -> MongoStore:
    store = MongoStore(mongo_client, store_settings)
    store.ensure_indexes()
    return store


def _order(outcome: Any) -> list[str]:
    return [s["job"] for s in outcome.statuses if s["status"] == "started"]


def test_catch_the_fish_runs_every_job_once_in_dependency_order(store: MongoStore) -> None:
    outcome = Driver(store, CATCH_THE_FISH).run(run_id="fish-1")

    assert outcome.run["status"] == "succeeded"
    assert set(outcome.job_states().values()) == {("succeeded", 1)}
    assert outcome.executions == {job.name: 1 for job in CATCH_THE_FISH.jobs()}
    order = _order(outcome)
    for job in CATCH_THE_FISH.jobs():
        for before in job.after:
            assert order.index(before) < order.index(job.name), f"{before} must start before {job.name}"
    # every job of the first phase starts before any of the second
    assert max(order.index(j.name) for j in CATCH_THE_FISH.phases[0].jobs) < order.index("clean")
    assert outcome.count("phase_completed") == 2
    assert outcome.count("workflow_succeeded") == 1


def test_outputs_reach_dependents_as_results_and_run_input_reaches_every_job(store: MongoStore) -> None:
    seen: dict[str, dict[str, Any]] = {}

    def remember(event: dict[str, Any], context: Any) -> dict[str, Any]:
        seen[event["job"]] = event
        return {"from": event["job"], "n": len(event["results"])}

    spec = workflow("joins", {"p": {"a": {}, "b": {}, "c": {"after": ["a", "b"]}}})
    outcome = Driver(store, spec, handlers=dict.fromkeys("abc", remember)).run(run_input={"mode": "fast"})

    assert outcome.run["status"] == "succeeded"
    assert seen["c"]["results"] == {"a": {"from": "a", "n": 0}, "b": {"from": "b", "n": 0}}
    assert seen["a"]["results"] == {}
    assert {event["input"]["mode"] for event in seen.values()} == {"fast"}
    assert seen["c"]["attempt"] == 1
    assert seen["c"]["phase"] == "p"


def test_when_false_skips_the_job_and_everything_only_reachable_through_it(store: MongoStore) -> None:
    spec = workflow(
        "conditions",
        {
            "p": {
                "probe": {},
                "fast": {"after": ["probe"], "when": "input.mode == 'fast'"},
                "after_fast": {"after": ["fast"]},
                "slow": {"after": ["probe"], "when": "input.mode == 'slow'"},
                "uses_result": {"after": ["probe"], "when": "results.probe.ok"},
            },
            "q": {"final": {}},
        },
    )
    handlers = {"probe": lambda event, context: {"ok": True}}
    outcome = Driver(store, spec, handlers=handlers).run(run_input={"mode": "slow"})

    states = outcome.job_states()
    assert outcome.run["status"] == "succeeded"
    assert states["fast"][0] == "skipped"
    assert states["after_fast"][0] == "skipped"
    assert states["slow"] == ("succeeded", 1)
    assert states["uses_result"] == ("succeeded", 1)
    assert "fast" not in outcome.executions
    assert "after_fast" not in outcome.executions
    assert states["final"] == ("succeeded", 1)


def test_a_when_that_yields_zero_runs_the_job(store: MongoStore) -> None:
    """JMESPath counts 0 as true (only false, null and empty strings, arrays and objects are
    false): a condition on a count of zero must not skip the job."""
    spec = workflow(
        "zero", {"p": {"probe": {}, "counted": {"after": ["probe"], "when": "results.probe.count"}}}
    )
    handlers = {"probe": lambda event, context: {"count": 0}}
    outcome = Driver(store, spec, handlers=handlers).run()

    assert outcome.job_states()["counted"] == ("succeeded", 1)


def test_a_phase_of_only_skipped_jobs_completes_and_the_run_goes_on(store: MongoStore) -> None:
    spec = workflow("all_skipped", {"a": {"x": {"when": "input.never"}}, "b": {"y": {}}})
    outcome = Driver(store, spec).run()

    assert outcome.run["status"] == "succeeded"
    assert outcome.job_states() == {"x": ("skipped", 0), "y": ("succeeded", 1)}


def test_next_runs_phases_in_the_named_order(store: MongoStore) -> None:
    base = workflow("jumps", {"a": {"ja": {}}, "b": {"jb": {}}, "c": {"jc": {}}, "d": {"jd": {}}})
    jumps = {"a": "c", "c": "b", "b": "d"}
    spec = replace(base, phases=tuple(replace(p, next=jumps.get(p.name)) for p in base.phases))
    outcome = Driver(store, spec).run()

    assert _order(outcome) == ["ja", "jc", "jb", "jd"]
    assert outcome.run["status"] == "succeeded"


def test_a_failing_job_is_retried_until_it_succeeds(store: MongoStore) -> None:
    calls: list[int] = []

    def flaky(event: dict[str, Any], context: Any) -> dict[str, Any]:
        calls.append(event["attempt"])
        if event["attempt"] < 3:
            raise ConnectionError("the boat rental is closed")
        return {"boat": "Sea Bream II"}

    spec = workflow("flaky", {"p": {"rent": {"retries": 2}, "sail": {"after": ["rent"]}}})
    outcome = Driver(store, spec, handlers={"rent": flaky}).run()

    assert calls == [1, 2, 3]
    assert outcome.run["status"] == "succeeded"
    assert outcome.job_states()["rent"] == ("succeeded", 3)
    assert outcome.count("failed", "rent") == 2
    assert outcome.run["jobs"]["rent"]["output"] == {"boat": "Sea Bream II"}


def test_retries_exhausted_fails_the_run_and_nothing_more_is_dispatched(store: MongoStore) -> None:
    def broken(event: dict[str, Any], context: Any) -> None:
        raise ValueError("no fish today")

    spec = workflow(
        "doomed",
        {"p": {"cast": {"retries": 1}, "beer": {}, "catch": {"after": ["cast"]}}, "q": {"cook": {}}},
    )
    outcome = Driver(store, spec, handlers={"cast": broken}).run()

    assert outcome.run["status"] == "failed"
    assert "no fish today" in outcome.run["error"]
    assert outcome.job_states()["cast"] == ("failed", 2)
    assert outcome.executions["cast"] == 2
    assert {e.job for e in outcome.dispatched} == {"cast", "beer"}
    assert outcome.count("workflow_failed") == 1
    assert outcome.count("workflow_succeeded") == 0
    failure = next(s for s in outcome.statuses if s["status"] == "workflow_failed")
    assert "cast" in failure["error"]


def test_a_handler_returning_a_list_succeeds_with_it_as_its_output(store: MongoStore) -> None:
    spec = workflow("list_output", {"p": {"a": {"retries": 0}}})
    outcome = Driver(store, spec, handlers={"a": lambda event, context: ["not", "a", "dict"]}).run()

    assert outcome.run["status"] == "succeeded"
    assert outcome.run["jobs"]["a"]["output"] == ["not", "a", "dict"]


def test_a_when_that_fails_at_run_time_fails_the_run_with_the_reason(store: MongoStore) -> None:
    spec = workflow("bad_when", {"p": {"a": {}, "b": {"after": ["a"], "when": "abs(input.word)"}}})
    outcome = Driver(store, spec).run(run_input={"word": "fish"})

    assert outcome.run["status"] == "failed"
    assert "the 'when' of 'b' failed" in outcome.run["error"]
