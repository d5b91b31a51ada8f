"""The named joins and caught failures (runtime/engine/joins.py): each join's decision as
(run, event) -> transition without MongoDB, then the early-start joins through the real
orchestrator and job wrapper under duplicated, reordered and crashing delivery: the job after
them is dispatched exactly once."""

from __future__ import annotations

from functools import partial
from typing import Any

import pymongo
import pytest

from cdk_app.local.faults import CrashAtStep
from runtime.documents.run import JobRecord
from runtime.engine.joins import join_outcome, upstream_failed
from runtime.statuses import JobState, RunState
from runtime.store.mongo import MongoStore
from runtime.store.settings import StoreSettings
from tests.engine_harness import Driver, Faults
from tests.test_engine_decisions import dispatched, failure, jobs_of, run_of, states_after, success
from tests.test_engine_flow import compiled, decided

S, F, K, U, P, D = (
    JobState.SUCCEEDED,
    JobState.FAILED,
    JobState.SKIPPED,
    JobState.UPSTREAM_FAILED,
    JobState.PENDING,
    JobState.DISPATCHED,
)


@pytest.mark.parametrize(
    ("join", "a", "b", "outcome"),
    [
        ("all", S, S, None),
        ("all", S, K, K),
        ("all", S, F, U),
        ("any", S, F, None),
        ("any", F, K, U),
        ("any", K, K, K),
        ("all_done", F, U, None),
        ("all_done", K, S, None),
        ("one_success", F, S, None),
        ("one_success", S, D, None),
        ("one_success", F, F, U),
        ("one_success", K, K, K),
        ("one_failed", S, F, None),
        ("one_failed", U, D, None),
        ("one_failed", S, S, K),
        ("all_failed", F, U, None),
        ("all_failed", F, S, K),
        ("none_failed", S, K, None),
        ("none_failed", S, U, U),
        ("none_failed_min_one_success", S, K, None),
        ("none_failed_min_one_success", K, K, K),
        ("none_failed_min_one_success", S, F, U),
    ],
)
def test_each_join_decides_as_its_table_says(join: str, a: JobState, b: JobState, outcome: Any) -> None:
    job = compiled({"p": {"a": {}, "b": {}, "c": {"after": ["a", "b"], "join": join}}}).job("c")

    assert join_outcome(job, {"a": a, "b": b}) == outcome


def test_a_failure_decides_the_jobs_whose_join_can_no_longer_hold_and_those_after_them() -> None:
    definition = compiled(
        {
            "p": {
                "a": {},
                "slow": {},
                "all": {"after": ["a", "slow"]},
                "then": {"after": ["all"], "join": "none_failed"},
                "any": {"after": ["a", "slow"], "join": "any"},
                "done": {"after": ["then"], "join": "all_done"},
            }
        }
    )
    states = {"a": F, "slow": D, "all": P, "then": P, "any": P, "done": P}

    assert upstream_failed(definition, states) == ["all", "then"]  # any waits for slow


EARLY = compiled(
    {
        "p": {
            "fast": {"retries": 0},
            "slow": {"retries": 0},
            "first": {"after": ["fast", "slow"], "join": "one_success"},
            "alarm": {"after": ["fast", "slow"], "join": "one_failed"},
        }
    }
)


def test_one_success_starts_at_the_first_success_while_the_others_still_run() -> None:
    run = run_of(EARLY, jobs={"fast": dispatched(), "slow": dispatched()})

    transition = decided(run, success("fast", 1, {"url": "a"}))

    assert jobs_of(transition) == [("first", 1)]
    assert dict(transition.dispatches[0].results) == {"fast": {"url": "a"}}
    assert "alarm" not in states_after(transition)  # it waits: no failure yet, and slow runs on


def test_one_failed_starts_at_the_first_failure_which_it_catches() -> None:
    run = run_of(EARLY, jobs={"fast": dispatched(), "slow": dispatched()})

    transition = decided(run, failure("fast", 1, "timeout"))

    assert states_after(transition) == {"fast": F, "alarm": D}
    assert transition.changes.get("status") is None, "the failure is caught: the run goes on"


def test_a_failure_nothing_after_it_can_catch_fails_the_run_at_once_as_before() -> None:
    definition = compiled({"p": {"a": {"retries": 0}, "b": {}, "c": {"after": ["a", "b"]}}})
    run = run_of(definition, jobs={"a": dispatched(), "b": dispatched()})

    transition = decided(run, failure("a", 1, "boom"))

    assert transition.changes["status"] == RunState.FAILED
    assert states_after(transition) == {"a": F, "c": U}
    assert transition.changes["error"] == "job 'a' failed after 1 attempt(s): boom"


def test_a_failure_that_could_be_caught_waits_for_its_catcher_and_fails_the_run_when_it_does_not() -> None:
    definition = compiled(
        {
            "p": {
                "a": {"retries": 0},
                "b": {},
                "c": {"after": ["a", "b"], "join": "all_failed"},
                "d": {"after": ["c"], "join": "all_done"},
            }
        }
    )
    run = run_of(definition, jobs={"a": dispatched(), "b": dispatched()})
    waiting = decided(run, failure("a", 1, "boom"))
    assert states_after(waiting) == {"a": F}
    assert waiting.changes.get("status") is None

    # b succeeded: all_failed skips c without running, so nothing accepted a's failure.
    after = run_of(definition, jobs={"a": JobRecord(state=F, attempt=1, error="boom"), "b": dispatched()})
    transition = decided(after, success("b", 1, {}))
    assert transition.changes["status"] == RunState.FAILED
    assert transition.changes["error"] == "job 'a' failed and no job after it accepts the failure: boom"
    assert "jobs.d.state" not in transition.changes, "a failed run dispatches nothing more"


def test_an_upstream_failed_job_passes_the_failure_on_to_a_job_after_it_that_catches_it() -> None:
    definition = compiled(
        {
            "p": {
                "a": {"retries": 0},
                "b": {"after": ["a"]},
                "cleanup": {"after": ["b"], "join": "all_done"},
            }
        }
    )
    run = run_of(definition, jobs={"a": dispatched()})

    transition = decided(run, failure("a", 1, "boom"))

    assert states_after(transition) == {"a": F, "b": U, "cleanup": D}
    assert transition.changes.get("status") is None


# -- under faults ------------------------------------------------------------------------------------


@pytest.fixture
def store(mongo_client: pymongo.MongoClient[dict], store_settings: StoreSettings) -> MongoStore:
    store = MongoStore(mongo_client, store_settings)
    store.ensure_indexes()
    return store


def _fails(event: dict[str, Any], context: Any) -> Any:
    raise RuntimeError("down")


FAULTS = [
    Faults(duplicate=3),
    *(Faults(duplicate=2, shuffle=True, seed=seed) for seed in range(6)),
    Faults(duplicate=2, shuffle=True, seed=8, crash_plan=lambda: CrashAtStep(2)),
    *(Faults(crash_plan=partial(CrashAtStep, step)) for step in range(1, 7)),
]


@pytest.mark.faults
@pytest.mark.parametrize("faults", FAULTS)
def test_one_success_dispatches_the_job_after_it_exactly_once_under_faults(
    store: MongoStore, faults: Faults
) -> None:
    definition = compiled(
        {
            "p": {
                **{f"mirror_{i}": {"retries": 0} for i in range(4)},
                "first": {"after": [f"mirror_{i}" for i in range(4)], "join": "one_success"},
                "alarm": {"after": [f"mirror_{i}" for i in range(4)], "join": "one_failed"},
            }
        }
    )
    handlers = {"mirror_0": _fails, "mirror_2": _fails}

    outcome = Driver(store, definition, handlers=handlers, faults=faults).run()

    assert outcome.run["status"] == "succeeded"
    assert outcome.executions["first"] == 1
    assert outcome.executions["alarm"] == 1
    assert [event.job for event in outcome.dispatched].count("first") >= 1
    assert len({(e.job, e.attempt) for e in outcome.dispatched if e.job == "first"}) == 1
    assert outcome.job_states()["first"] == ("succeeded", 1)
    assert outcome.job_states()["alarm"] == ("succeeded", 1)
    assert outcome.count("workflow_succeeded") == 1


@pytest.mark.faults
@pytest.mark.parametrize("faults", FAULTS[:4])
def test_an_uncaught_failure_fails_the_run_once_under_faults(store: MongoStore, faults: Faults) -> None:
    definition = compiled(
        {
            "p": {
                "a": {"retries": 0},
                "b": {"retries": 0},
                "first": {"after": ["a", "b"], "join": "one_success"},
            }
        },
        on_failure={"page": {}},
    )

    outcome = Driver(store, definition, handlers={"a": _fails, "b": _fails}, faults=faults).run()

    assert outcome.run["status"] == "failed"
    assert outcome.job_states() == {
        "a": ("failed", 1),
        "b": ("failed", 1),
        "first": ("upstream_failed", 0),
        "page": ("succeeded", 1),
    }
    assert outcome.executions["page"] == 1
    assert outcome.count("workflow_failed") == 1


def test_a_depends_that_cannot_be_evaluated_fails_the_run_saying_so() -> None:
    definition = compiled({"p": {"a": {}, "c": {"after": ["a"], "depends": "length(jobs.a.output) > `1`"}}})
    run = run_of(definition, jobs={"a": dispatched()})

    transition = decided(run, success("a", 1, 7))

    assert transition.changes["status"] == RunState.FAILED
    assert transition.changes["error"].startswith("the 'depends' of 'c' failed: ")
