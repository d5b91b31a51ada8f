"""The engine's rules for data across phases, joins, tolerated failures and failure handlers:
decisions as (run, event) -> transition without MongoDB, then the same rules through the real
orchestrator and job wrapper on a real server, under duplicated, reordered and racing delivery."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pymongo
import pytest

from cdk_app.local.atlas_events import envelope
from cdk_app.local.faults import CrashAtStep
from runtime.definition.loader import workflow_from_document
from runtime.definition.model import HANDLERS_PHASE, Workflow
from runtime.documents.failures import Failure
from runtime.documents.run import JobRecord, Run, StatusEvent
from runtime.engine.decide import decide
from runtime.engine.operations import reopened
from runtime.engine.progress import plan_progress
from runtime.engine.transition import Transition
from runtime.service.notifier import compose
from runtime.service.operations import request_redrive
from runtime.service.orchestrator import Orchestrator
from runtime.service.runs import start_run
from runtime.statuses import JobState, RunState, StatusName
from runtime.store.mongo import MongoStore
from runtime.store.settings import StoreSettings
from tests.engine_harness import Driver, Faults, RecordingDispatcher, race_orchestrators
from tests.test_engine_decisions import (
    NOW,
    START_KEY,
    dispatched,
    failure,
    jobs_of,
    report,
    run_of,
    states_after,
    statuses_of,
    succeeded,
    success,
)
from tests.test_operations_faults import Cloud


def compiled(phases: dict[str, dict[str, dict[str, Any]]], **spec: Any) -> Workflow:
    """A workflow through the real loader (so every example is a valid spec)."""
    return workflow_from_document(
        {"workflow": "w", "phases": {p: {"jobs": j} for p, j in phases.items()}, **spec}
    )


def decided(run: Run, event: StatusEvent) -> Transition:
    """``decide`` where the event must change the run."""
    transition = decide(run, event, NOW)
    assert isinstance(transition, Transition), transition
    return transition


def skipped() -> JobRecord:
    return JobRecord(state=JobState.SKIPPED, caused_by=START_KEY, claimed_at=NOW)


def failed(attempt: int = 1) -> JobRecord:
    return JobRecord(state=JobState.FAILED, attempt=attempt, error="boom")


# -- data across phases ------------------------------------------------------------------------------

ACROSS = compiled(
    {
        "p": {"a": {"retries": 0}, "b": {"retries": 0}},
        "q": {"c": {"after": ["a"]}, "d": {"after": ["c", "b"]}, "e": {"when": "results.b.go"}},
    }
)


def test_a_job_after_only_earlier_phase_jobs_starts_with_its_phase_and_gets_their_outputs() -> None:
    run = run_of(ACROSS, jobs={"a": succeeded({"n": 1}), "b": dispatched()})

    transition = decided(run, success("b", output={"go": True}))

    assert jobs_of(transition) == [("c", 1), ("e", 1)]
    assert isinstance(transition, Transition)
    assert [dict(event.results) for event in transition.dispatches] == [{"a": {"n": 1}}, {}]


def test_a_when_reads_an_earlier_phase_result_it_does_not_wait_for() -> None:
    run = run_of(ACROSS, jobs={"a": succeeded({"n": 1}), "b": dispatched()})

    transition = decided(run, success("b", output={"go": False}))

    assert states_after(transition)["e"] == JobState.SKIPPED
    assert jobs_of(transition) == [("c", 1)]


def test_a_job_mixing_earlier_and_same_phase_dependencies_waits_for_the_same_phase_ones() -> None:
    run = run_of(
        ACROSS, phase="q", jobs={"a": succeeded(1), "b": succeeded(2), "c": dispatched(), "e": skipped()}
    )

    transition = decided(run, replace(success("c", output=3), phase="q"))

    assert jobs_of(transition) == [("d", 1)]
    assert isinstance(transition, Transition)
    assert dict(transition.dispatches[0].results) == {"c": 3, "b": 2}


def test_a_skipped_earlier_phase_job_skips_its_all_join_dependents_in_a_later_phase() -> None:
    definition = compiled({"p": {"a": {"when": "input.go"}}, "q": {"b": {"after": ["a"]}, "c": {}}})

    transition = plan_progress(run_of(definition, {"go": False}), START_KEY, NOW)

    assert states_after(transition) == {
        "a": JobState.SKIPPED,
        "b": JobState.SKIPPED,
        "c": JobState.DISPATCHED,
    }


# -- joins -------------------------------------------------------------------------------------------

ANY = compiled(
    {
        "p": {
            "left": {"when": "input.left"},
            "right": {"when": "input.right"},
            "either": {"after": ["left", "right"], "join": "any"},
            "both": {"after": ["left", "right"]},
            "then": {"after": ["either"], "join": "any"},
        },
        "q": {"last": {}},
    }
)


@pytest.mark.parametrize(
    ("run_input", "dispatched_first"),
    [({"left": True, "right": False}, ["left"]), ({"left": False, "right": True}, ["right"])],
)
def test_an_any_join_runs_once_all_are_finished_with_the_outputs_of_those_that_succeeded(
    run_input: dict[str, bool], dispatched_first: list[str]
) -> None:
    start = plan_progress(run_of(ANY, run_input), START_KEY, NOW)
    assert [job for job, _ in jobs_of(start)] == dispatched_first
    runner = dispatched_first[0]
    run = run_of(
        ANY,
        run_input,
        jobs={name: JobRecord(state=JobState(state)) for name, state in states_after(start).items()},
    )
    run = replace(run, jobs={**run.jobs, runner: dispatched()})

    transition = decided(run, success(runner, output={"by": runner}))

    assert jobs_of(transition) == [("either", 1)]
    assert states_after(transition)["both"] == JobState.SKIPPED
    assert isinstance(transition, Transition)
    assert dict(transition.dispatches[0].results) == {runner: {"by": runner}}


def test_skips_propagate_through_a_chain_of_any_joins_and_the_phase_still_completes() -> None:
    transition = plan_progress(run_of(ANY, {"left": False, "right": False}), START_KEY, NOW)

    assert states_after(transition) == {
        "left": JobState.SKIPPED,
        "right": JobState.SKIPPED,
        "either": JobState.SKIPPED,
        "both": JobState.SKIPPED,
        "then": JobState.SKIPPED,
        "last": JobState.DISPATCHED,
    }
    assert statuses_of(transition) == [(StatusName.PHASE_COMPLETED, "p")]


def test_an_any_join_waits_while_one_of_its_jobs_is_still_running() -> None:
    run = run_of(ANY, {"left": True, "right": True}, jobs={"left": dispatched(), "right": dispatched()})

    transition = decided(run, success("left"))

    assert jobs_of(transition) == []


def test_a_when_is_evaluated_only_once_the_join_holds() -> None:
    definition = compiled({"p": {"a": {"when": "input.go"}, "b": {"after": ["a"], "when": "results.a.x.y"}}})

    transition = plan_progress(run_of(definition, {"go": False}), START_KEY, NOW)

    assert states_after(transition) == {"a": JobState.SKIPPED, "b": JobState.SKIPPED}


def test_a_phase_whose_only_jobs_are_skipped_completes_and_the_run_goes_on() -> None:
    definition = compiled({"p": {"x": {"when": "input.go"}, "y": {"when": "input.go"}}, "q": {"z": {}}})

    transition = plan_progress(run_of(definition, {"go": False}), START_KEY, NOW)

    assert jobs_of(transition) == [("z", 1)]
    assert statuses_of(transition) == [(StatusName.PHASE_COMPLETED, "p")]


# -- tolerated failures ------------------------------------------------------------------------------

TOLERANT = compiled(
    {
        "p": {
            "ok": {},
            "optional": {"allow_failure": True, "retries": 1},
            "needs": {"after": ["optional"]},
            "either": {"after": ["ok", "optional"], "join": "any"},
        }
    }
)


def test_a_tolerated_failure_with_attempts_left_is_retried_first() -> None:
    run = run_of(TOLERANT, jobs={"ok": succeeded(1), "optional": dispatched()})

    assert jobs_of(decided(run, failure("optional", 1))) == [("optional", 2)]


def test_the_last_failure_of_a_tolerated_job_lets_the_run_go_on_and_end_succeeded() -> None:
    run = run_of(TOLERANT, jobs={"ok": succeeded(1), "optional": dispatched(2)})

    transition = decided(run, failure("optional", 2))

    assert states_after(transition) == {
        "optional": JobState.FAILED,
        "needs": JobState.UPSTREAM_FAILED,  # its join (all) does not accept a failure
        "either": JobState.DISPATCHED,
    }
    assert isinstance(transition, Transition)
    assert dict(transition.dispatches[0].results) == {"ok": 1}
    assert transition.fallback is not None  # the failure alone, if another handler wrote first


def test_a_tolerated_failure_recorded_before_is_progressed_on_redelivery() -> None:
    run = run_of(TOLERANT, jobs={"ok": succeeded(1), "optional": failed(2)})

    transition = decided(run, failure("optional", 2))

    assert states_after(transition) == {"needs": JobState.UPSTREAM_FAILED, "either": JobState.DISPATCHED}


def test_a_run_whose_only_failure_was_tolerated_succeeds() -> None:
    run = run_of(
        TOLERANT, jobs={"ok": succeeded(1), "optional": failed(2), "needs": skipped(), "either": dispatched()}
    )

    transition = decided(run, success("either"))

    assert statuses_of(transition)[-1] == (StatusName.WORKFLOW_SUCCEEDED, None)


def test_a_redrive_keeps_a_tolerated_failure_as_it_is() -> None:
    definition = compiled({"p": {"opt": {"allow_failure": True}, "bad": {}}})
    run = run_of(definition, state=RunState.FAILED, jobs={"opt": failed(3), "bad": failed(3)})

    again = reopened(run)

    assert again.jobs["opt"].state == JobState.FAILED
    assert again.jobs["bad"].state == JobState.PENDING


# -- failure handlers --------------------------------------------------------------------------------

HANDLED = compiled(
    {"p": {"a": {"retries": 0}, "b": {"retries": 0}, "c": {"after": ["a", "b"]}}, "q": {"d": {}}},
    on_failure={"release": {"retries": 1}, "page": {"after": ["release"]}, "audit": {"when": "input.audit"}},
)


def test_a_final_failure_starts_the_handlers_with_the_failure_and_every_success_instead_of_ending() -> None:
    run = run_of(HANDLED, {"audit": False}, jobs={"a": dispatched(), "b": succeeded({"b": 1})})

    transition = decided(run, failure("a", 1, "disk full"))

    assert isinstance(transition, Transition)
    assert jobs_of(transition) == [("release", 1)]
    assert states_after(transition) == {
        "a": JobState.FAILED,
        "c": JobState.UPSTREAM_FAILED,  # it waits for a (join all), which failed
        "release": JobState.DISPATCHED,
        "audit": JobState.SKIPPED,
    }
    assert transition.statuses == ()
    event = transition.dispatches[0]
    assert event.phase == HANDLERS_PHASE
    assert dict(event.results) == {"b": {"b": 1}}
    assert event.failure == {
        "phase": "p",
        "job": "a",
        "attempt": 1,
        "error": "job 'a' failed after 1 attempt(s): disk full",
        "reason": "failed",
    }
    assert transition.changes["phase"] == HANDLERS_PHASE
    assert transition.conditions == {"version": run.version}


def _handling(**jobs: JobRecord) -> Any:
    failure_record = Failure(
        reason="failed", phase="p", job="a", attempt=1, error="job 'a' failed", caused_by="failed:a:1"
    )
    base = {"a": failed(), "b": succeeded(1), "audit": skipped()}
    return run_of(
        HANDLED, {"audit": False}, phase=HANDLERS_PHASE, failure=failure_record, jobs={**base, **jobs}
    )


def test_the_run_ends_failed_with_the_failures_error_once_every_handler_has_finished() -> None:
    run = _handling(release=succeeded(), page=dispatched())

    transition = decided(run, replace(success("page"), phase=HANDLERS_PHASE))

    assert isinstance(transition, Transition)
    assert transition.changes["status"] == RunState.FAILED
    assert transition.changes["error"] == "job 'a' failed"
    assert statuses_of(transition) == [
        (StatusName.PHASE_COMPLETED, HANDLERS_PHASE),
        (StatusName.WORKFLOW_FAILED, None),
    ]


def test_a_failing_handler_is_retried_then_recorded_and_never_starts_the_handlers_again() -> None:
    retry = decided(_handling(release=dispatched()), replace(failure("release", 1), phase=HANDLERS_PHASE))
    assert jobs_of(retry) == [("release", 2)]
    assert "failure" not in retry.conditions, "a handler retries while the run's failure stands"

    transition = decide(
        _handling(release=dispatched(2)), replace(failure("release", 2), phase=HANDLERS_PHASE), NOW
    )

    assert isinstance(transition, Transition)
    assert states_after(transition) == {"release": JobState.FAILED, "page": JobState.UPSTREAM_FAILED}
    assert "failure" not in transition.changes
    assert statuses_of(transition)[-1] == (StatusName.WORKFLOW_FAILED, None)


def test_workflow_jobs_get_no_new_attempts_while_the_handlers_run_but_their_successes_are_kept() -> None:
    late_failure = decided(_handling(b=dispatched(), release=dispatched()), failure("b", 1))
    assert states_after(late_failure) == {"b": JobState.FAILED}
    assert jobs_of(late_failure) == []

    late_success = decided(_handling(b=dispatched(), release=dispatched()), success("b", output=7))

    assert isinstance(late_success, Transition)
    assert late_success.changes["jobs.b.output"] == 7
    assert jobs_of(late_success) == []


def test_the_handlers_end_the_run_at_once_when_every_one_is_skipped() -> None:
    definition = compiled(
        {"p": {"a": {"retries": 0}}}, on_failure={"only_on_cancel": {"when": "input.cancelling"}}
    )
    run = run_of(definition, jobs={"a": dispatched()})

    transition = decided(run, failure("a"))

    assert states_after(transition) == {"a": JobState.FAILED, "only_on_cancel": JobState.SKIPPED}
    assert statuses_of(transition) == [
        (StatusName.PHASE_COMPLETED, HANDLERS_PHASE),
        (StatusName.WORKFLOW_FAILED, None),
    ]


def test_a_cancel_runs_the_handlers_and_the_run_ends_cancelled_after_them() -> None:
    run = run_of(HANDLED, {"audit": True}, jobs={"a": dispatched(), "b": succeeded(1)})

    transition = decided(run, report(StatusName.CANCEL_REQUESTED, reason="wrong order"))

    assert isinstance(transition, Transition)
    assert states_after(transition) == {
        "a": JobState.CANCELLED,
        "release": JobState.DISPATCHED,
        "audit": JobState.DISPATCHED,
    }
    assert transition.dispatches[0].failure == {
        "phase": "p",
        "job": None,
        "attempt": None,
        "error": "cancelled: wrong order",
        "reason": "cancelled",
    }
    assert "status" not in transition.changes
    cancelling = replace(
        run,
        phase=HANDLERS_PHASE,
        failure=Failure(
            reason="cancelled",
            phase="p",
            error="cancelled: wrong order",
            caused_by="cancel_requested",
            cancel_reason="wrong order",
        ),
        jobs={
            **run.jobs,
            "a": JobRecord(state=JobState.CANCELLED, attempt=1),
            "release": succeeded(),
            "page": succeeded(),
            "audit": dispatched(),
        },
    )
    assert (
        decide(cancelling, report(StatusName.CANCEL_REQUESTED, reason="wrong order"), NOW) is None
    )  # a duplicate
    end = decided(cancelling, replace(success("audit"), phase=HANDLERS_PHASE))
    assert isinstance(end, Transition)
    assert end.changes["status"] == RunState.CANCELLED
    assert end.statuses[-1].status == StatusName.WORKFLOW_CANCELLED
    assert end.statuses[-1].reason == "wrong order"


def test_a_cancel_while_the_handlers_run_ends_the_run_at_once() -> None:
    transition = decided(_handling(release=dispatched()), report(StatusName.CANCEL_REQUESTED))

    assert isinstance(transition, Transition)
    assert transition.changes["status"] == RunState.CANCELLED
    assert states_after(transition) == {"release": JobState.CANCELLED}


def test_a_redrive_after_the_handlers_ran_goes_on_where_the_run_failed_and_resets_the_handlers() -> None:
    ended = replace(
        _handling(release=succeeded(attempt=2), page=failed(), audit=skipped()), state=RunState.FAILED
    )

    again = reopened(ended)

    assert (again.phase, again.failure) == ("p", None)
    assert {
        name: (again.jobs[name].state, again.jobs[name].attempt) for name in ("a", "release", "page", "audit")
    } == {
        "a": (JobState.PENDING, 1),
        "release": (JobState.PENDING, 2),
        "page": (JobState.PENDING, 1),
        "audit": (JobState.PENDING, 0),
    }


def test_the_notifier_says_a_failure_is_tolerated_and_which_failures_a_run_tolerated() -> None:
    _, message = compose(failure("optional", 2), max_attempts=2, may_fail=True)
    assert "no attempts left, tolerated (allow_failure): the run goes on" in message

    _, ended = compose(report(StatusName.WORKFLOW_SUCCEEDED), tolerated=["optional", "extra"])
    assert ended.endswith("succeeded.\nFailed and tolerated (allow_failure): optional, extra.")


# -- on a real server, under faults -----------------------------------------------------------------


@pytest.fixture
def store(mongo_client: pymongo.MongoClient[dict], store_settings: StoreSettings) -> MongoStore:
    store = MongoStore(mongo_client, store_settings)
    store.ensure_indexes()
    return store


RACING = compiled(
    {"wide": {**{f"ok_{i:02d}": {"retries": 0} for i in range(12)}, "breaks": {"retries": 0}}},
    on_failure={"release": {}, "page": {"after": ["release"]}},
)


def _fails(event: dict[str, Any], context: Any) -> Any:
    raise RuntimeError(f"{event['job']} broke")


def _echo(event: dict[str, Any], context: Any) -> Any:
    return {"job": event["job"], "saw": sorted(event["results"]), "failure": event.get("failure")}


@pytest.mark.faults
def test_a_failure_racing_the_successes_of_other_jobs_starts_the_handlers_once(
    store: MongoStore, mongo_uri: str
) -> None:
    dispatcher = RecordingDispatcher()
    run_id = start_run(store, RACING).run_id
    settings = store.settings
    started = store.find_status(run_id, None, None, "workflow_started", 0)
    assert started is not None
    Orchestrator(store, dispatcher).handle(envelope(started, settings.database, settings.statuses_collection))
    assert len(dispatcher.drain()) == 13
    documents = []
    for job in [*(f"ok_{i:02d}" for i in range(12)), "breaks"]:
        document: dict[str, Any] = {
            "runId": run_id,
            "workflow": "w",
            "phase": "wide",
            "job": job,
            "attempt": 1,
        }
        document |= (
            {"status": "failed", "error": "broke"}
            if job == "breaks"
            else {"status": "success", "output": job}
        )
        documents.append(document)

    errors = race_orchestrators(store, mongo_uri, documents, dispatcher)

    assert errors == []
    run = store.load_run(run_id)
    assert run is not None
    assert [event.job for event in dispatcher.drain()] == ["release"], "the handlers start once"
    assert run["phase"] == HANDLERS_PHASE
    assert all(run["jobs"][f"ok_{i:02d}"]["state"] == "succeeded" for i in range(12)), "no success is lost"
    assert run["failure"]["job"] == "breaks"


@pytest.mark.faults
@pytest.mark.parametrize(
    "faults",
    [
        Faults(duplicate=3),
        Faults(duplicate=2, shuffle=True, seed=3),
        Faults(duplicate=2, shuffle=True, seed=8, crash_plan=lambda: CrashAtStep(2)),
        Faults(crash_plan=lambda: CrashAtStep(3)),
    ],
    ids=["duplicated", "shuffled", "shuffled_and_crashing", "crashing"],
)
def test_the_handlers_run_once_each_under_duplicate_and_reordered_delivery(
    store: MongoStore, faults: Faults
) -> None:
    definition = compiled(
        {"p": {"lock": {}, "charge": {"after": ["lock"], "retries": 1}}, "q": {"never": {}}},
        on_failure={"release": {}, "page": {"after": ["release"]}, "audit": {}},
    )
    handlers = {"charge": _fails, "release": _echo, "page": _echo, "audit": _echo}

    outcome = Driver(store, definition, handlers=handlers, faults=faults).run()

    assert outcome.run["status"] == "failed"
    assert outcome.job_states() == {
        "lock": ("succeeded", 1),
        "charge": ("failed", 2),
        "never": ("pending", 0),
        "release": ("succeeded", 1),
        "page": ("succeeded", 1),
        "audit": ("succeeded", 1),
    }
    assert {job: outcome.executions[job] for job in ("release", "page", "audit")} == {
        "release": 1,
        "page": 1,
        "audit": 1,
    }
    # Every success recorded when it was dispatched: audit runs beside release, so it may be there.
    assert {"lock", "release"} <= set(outcome.run["jobs"]["page"]["output"]["saw"])
    assert outcome.run["jobs"]["page"]["output"]["failure"]["job"] == "charge"
    assert outcome.count("workflow_failed") == 1


@pytest.mark.faults
def test_a_redriven_run_that_fails_again_runs_its_handlers_again(store: MongoStore) -> None:
    definition = compiled({"p": {"charge": {"retries": 0}}}, on_failure={"release": {}})
    cloud = Cloud(store, definition, handlers={"charge": _fails, "release": _echo})
    start_run(store, definition, run_id="twice")
    first = cloud.settle("twice")
    assert (first["status"], first["jobs"]["release"]["state"]) == ("failed", "succeeded")

    request_redrive(store, "twice")
    again = cloud.settle("twice")

    assert again["status"] == "failed"
    assert {name: (job["state"], job["attempt"]) for name, job in again["jobs"].items()} == {
        "charge": ("failed", 2),
        "release": ("succeeded", 2),
    }
    assert cloud.executions["release"] == 2
    assert again["jobs"]["release"]["output"]["failure"]["attempt"] == 2
    ended = [
        (s["status"], s["attempt"]) for s in store.run_statuses("twice") if s["status"] == "workflow_failed"
    ]
    assert ended == [("workflow_failed", 0), ("workflow_failed", 1)]
