"""The engine's decisions on operations (cancel, redrive) and on retention, as tables of
(run, event) -> transition: no MongoDB, no handlers. The same races on a real server are in
tests/test_operations_faults.py."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from runtime.documents.run import JobRecord, Run, StatusEvent, status_from_document
from runtime.engine.decide import decide
from runtime.engine.operations import plan_cancel, plan_redrive
from runtime.engine.replay import replay
from runtime.engine.transition import Expiry, Rejection, Transition
from runtime.errors import EventError
from runtime.service.notifier import compose
from runtime.statuses import ORCHESTRATOR_STATUSES, JobState, RunState, StatusName
from tests.test_engine_decisions import (
    NOW,
    SKIPPED,
    TWO_PHASES,
    dispatched,
    failure,
    jobs_of,
    report,
    run_of,
    spec,
    states_after,
    succeeded,
    success,
)


def cancel(round_: int = 0, reason: str | None = None) -> StatusEvent:
    return report(StatusName.CANCEL_REQUESTED, attempt=round_, reason=reason)


def redrive(round_: int = 1) -> StatusEvent:
    return report(StatusName.REDRIVE_REQUESTED, attempt=round_)


def failed(attempt: int, error: str = "boom") -> JobRecord:
    return JobRecord(state=JobState.FAILED, attempt=attempt, error=error)


def cancelled_job(attempt: int = 1) -> JobRecord:
    return JobRecord(state=JobState.CANCELLED, attempt=attempt, caused_by="workflow_started", claimed_at=NOW)


MID_PHASE = {"a": succeeded({"n": 1}), "b": dispatched()}
"""Phase p of TWO_PHASES half done: a succeeded, b running, c (after both) pending."""


def test_both_operations_are_routed_to_the_orchestrator() -> None:
    assert {"cancel_requested", "redrive_requested"} <= set(ORCHESTRATOR_STATUSES)


# -- cancel --------------------------------------------------------------------------------------


def test_a_cancel_ends_the_run_and_cancels_the_attempts_in_flight_under_the_version_read() -> None:
    run = run_of(TWO_PHASES, jobs=MID_PHASE, version=5)

    transition = decide(run, cancel(reason="wrong lake"), NOW)

    assert isinstance(transition, Transition)
    assert transition.conditions == {"version": 5}
    assert transition.changes == {
        "jobs.b.state": "cancelled",
        "status": "cancelled",
        "finishedBy": "cancel_requested",
        "error": "cancelled: wrong lake",
    }
    assert transition.dispatches == ()
    [ended] = transition.statuses
    assert (ended.status, ended.attempt, ended.reason) == ("workflow_cancelled", 0, "wrong lake")
    assert transition.expiry is None, "a run kept for good leaves its statuses alone"


def test_a_cancel_without_a_reason_says_cancelled() -> None:
    transition = plan_cancel(run_of(TWO_PHASES), cancel(), NOW)

    assert isinstance(transition, Transition)
    assert transition.changes["error"] == "cancelled"


@pytest.mark.parametrize(
    ("run", "event", "expected"),
    [
        pytest.param(
            run_of(TWO_PHASES, state=RunState.SUCCEEDED, finished_by="success:e:1"),
            cancel(),
            Rejection(action="ignored", reason="the run has already ended (succeeded)"),
            id="ended-before-the-cancel-arrived",
        ),
        pytest.param(
            run_of(TWO_PHASES, state=RunState.CANCELLED, finished_by="cancel_requested"),
            cancel(),
            None,
            id="this-cancel-applied-before",
        ),
        pytest.param(
            run_of(TWO_PHASES, redrives=1),
            cancel(0),
            Rejection(action="ignored", reason="a cancel of round 0; the run is in round 1"),
            id="a-cancel-from-before-a-redrive",
        ),
    ],
)
def test_a_cancel_that_comes_too_late_or_again_changes_nothing(
    run: Run, event: StatusEvent, expected: Rejection | None
) -> None:
    assert decide(run, event, NOW) == expected


CANCELLED_MID_PHASE = run_of(
    TWO_PHASES,
    state=RunState.CANCELLED,
    finished_by="cancel_requested",
    error="cancelled",
    jobs={"a": succeeded({"n": 1}), "b": cancelled_job()},
)


@pytest.mark.parametrize(
    "event",
    [success("b"), failure("b"), report(StatusName.WORKFLOW_STARTED), success("a")],
    ids=["success-in-flight", "failure-in-flight", "start-redelivered", "success-redelivered"],
)
def test_reports_after_a_cancel_change_nothing_and_dispatch_nothing(event: StatusEvent) -> None:
    decision = decide(CANCELLED_MID_PHASE, event, NOW)

    assert decision is None or isinstance(decision, Rejection)
    dispatches, statuses = replay(CANCELLED_MID_PHASE, event.key, NOW + timedelta(hours=1), timedelta(0))
    assert dispatches == ()
    assert [s.status for s in statuses] == []


# -- redrive -------------------------------------------------------------------------------------


RETRIES = 1
FAILED_IN_Q = run_of(
    TWO_PHASES,
    state=RunState.FAILED,
    phase="q",
    finished_by="failed:d:2",
    error="job 'd' failed after 2 attempt(s): boom",
    version=9,
    jobs={
        "a": succeeded({"n": 1}),
        "b": succeeded({"n": 2}),
        "c": succeeded({"n": 3}),
        "d": failed(1 + RETRIES),
    },
)
"""Failed in its second phase: d used up its attempts; e (after d) was never reached."""


def test_a_redrive_reopens_the_failed_run_and_gives_the_failed_job_its_next_attempt() -> None:
    transition = decide(FAILED_IN_Q, redrive(), NOW)

    assert isinstance(transition, Transition)
    assert transition.conditions == {"version": 9}
    assert {key: transition.changes[key] for key in ("status", "finishedBy", "error", "redrives")} == {
        "status": "running",
        "finishedBy": None,
        "error": None,
        "redrives": 1,
    }
    assert jobs_of(transition) == [("d", 3)], "attempts keep counting up"
    assert transition.changes["jobs.d"] == {
        "state": "dispatched",
        "attempt": 3,
        "causedBy": "redrive_requested:1",
        "claimedAt": NOW,
        "firstAttempt": 3,
        "startedAt": NOW,  # what its max_duration counts from, afresh in the new round
    }
    assert states_after(transition) == {"d": "dispatched"}, "succeeded jobs and e are left as they are"
    assert [(s.status, s.attempt) for s in transition.statuses] == [("workflow_redriven", 1)]


def test_a_redrive_of_a_cancelled_run_restarts_the_attempts_the_cancel_cut_short() -> None:
    transition = decide(CANCELLED_MID_PHASE, redrive(), NOW)

    assert isinstance(transition, Transition)
    assert jobs_of(transition) == [("b", 2)]
    assert transition.dispatches[0].results == {}
    assert states_after(transition) == {"b": "dispatched"}


def test_a_redrive_of_a_run_cancelled_before_it_started_starts_it() -> None:
    run = run_of(TWO_PHASES, state=RunState.CANCELLED, finished_by="cancel_requested")

    assert jobs_of(decide(run, redrive(), NOW)) == [("a", 1), ("b", 1)]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("run", "event", "expected"),
    [
        pytest.param(
            run_of(TWO_PHASES),
            redrive(),
            Rejection(
                action="ignored", reason="the run is running: only a failed or cancelled run is redriven"
            ),
            id="running",
        ),
        pytest.param(
            run_of(TWO_PHASES, state=RunState.SUCCEEDED),
            redrive(),
            Rejection(
                action="ignored", reason="the run is succeeded: only a failed or cancelled run is redriven"
            ),
            id="succeeded",
        ),
        pytest.param(
            replace(FAILED_IN_Q, state=RunState.RUNNING, redrives=1), redrive(1), None, id="applied-before"
        ),
        pytest.param(
            replace(FAILED_IN_Q, redrives=2),
            redrive(1),
            Rejection(action="ignored", reason="a redrive to round 1; the run is in round 2"),
            id="an-old-redrive-delivered-late",
        ),
        pytest.param(
            FAILED_IN_Q,
            redrive(2),
            Rejection(action="ignored", reason="a redrive to round 2; the run is in round 0"),
            id="out-of-order",
        ),
    ],
)
def test_a_redrive_that_does_not_fit_the_run_changes_nothing(
    run: Run, event: StatusEvent, expected: Rejection | None
) -> None:
    assert decide(run, event, NOW) == expected


REDRIVEN = replace(
    FAILED_IN_Q,
    state=RunState.RUNNING,
    redrives=1,
    finished_by=None,
    error=None,
    jobs={
        **FAILED_IN_Q.jobs,
        "d": JobRecord(
            state=JobState.DISPATCHED,
            attempt=3,
            first_attempt=3,
            caused_by="redrive_requested:1",
            claimed_at=NOW,
        ),
    },
)
"""FAILED_IN_Q after its first redrive was applied."""


def test_a_redriven_job_has_a_fresh_retry_budget() -> None:
    retried = decide(REDRIVEN, failure("d", 3), NOW)
    assert jobs_of(retried) == [("d", 4)]  # type: ignore[arg-type]

    last = replace(REDRIVEN, jobs={**REDRIVEN.jobs, "d": replace(REDRIVEN.jobs["d"], attempt=4)})
    ended = decide(last, failure("d", 4), NOW)
    assert isinstance(ended, Transition)
    assert ended.changes["status"] == "failed"
    assert ended.changes["error"] == "job 'd' failed after 2 attempt(s): boom"
    assert [(s.status, s.attempt) for s in ended.statuses] == [("workflow_failed", 1)]
    assert ended.statuses[0].key == "workflow_failed:1", "the second failure is a status of its own"


def test_a_late_duplicate_of_the_old_failure_changes_nothing_after_a_redrive() -> None:
    assert decide(REDRIVEN, failure("d", 2), NOW) is None
    assert replay(REDRIVEN, failure("d", 2).key, NOW + timedelta(hours=1), timedelta(0)) == ((), ())


def test_a_redriven_run_that_succeeds_records_its_end_in_its_round() -> None:
    run = replace(
        REDRIVEN,
        jobs={**REDRIVEN.jobs, "d": succeeded(attempt=3), "e": dispatched(caused_by="success:d:3")},
    )

    transition = decide(run, success("e"), NOW)

    assert isinstance(transition, Transition)
    assert [(s.status, s.phase, s.attempt) for s in transition.statuses] == [
        ("phase_completed", "q", 1),
        ("workflow_succeeded", None, 1),
    ]


def test_a_redelivered_redrive_records_its_status_again() -> None:
    _, statuses = replay(REDRIVEN, redrive(1).key, NOW, timedelta(0))

    assert [(s.status, s.attempt) for s in statuses] == [("workflow_redriven", 1)]


def test_a_redrive_whose_when_cannot_be_evaluated_fails_the_run_again_in_its_round() -> None:
    definition = spec({"p": {"a": {}, "b": {"after": ["a"], "when": "abs(input.x)"}}})
    run = run_of(
        definition,
        {"x": "word"},
        state=RunState.FAILED,
        jobs={"a": succeeded(), "b": JobRecord(state=JobState.FAILED, error="the 'when' of 'b' failed")},
    )

    transition = decide(run, redrive(), NOW)

    assert isinstance(transition, Transition)
    assert transition.changes["status"] == "failed"
    assert [(s.status, s.attempt) for s in transition.statuses] == [
        ("workflow_redriven", 1),
        ("workflow_failed", 1),
    ]


# -- retention -----------------------------------------------------------------------------------


def _kept(days: int | None, **fields: Any) -> Run:
    definition = replace(TWO_PHASES, retention_days=days)
    return run_of(definition, **fields)


@pytest.mark.parametrize(
    ("run", "event"),
    [
        pytest.param(_kept(7, jobs=MID_PHASE), cancel(), id="cancel"),
        pytest.param(_kept(7, jobs={"a": dispatched(2)}), failure("a", 2), id="failure"),
        pytest.param(
            _kept(
                7,
                phase="q",
                jobs={"a": succeeded(), "b": succeeded(), "c": succeeded(), "d": SKIPPED, "e": dispatched()},
            ),
            success("e"),
            id="success",
        ),
    ],
)
def test_a_run_that_ends_under_retention_expires_with_its_statuses(run: Run, event: StatusEvent) -> None:
    transition = decide(run, event, NOW)

    assert isinstance(transition, Transition)
    assert transition.changes["expireAt"] == NOW + timedelta(days=7)
    assert transition.expiry == Expiry(NOW + timedelta(days=7))


def test_a_run_ending_without_retention_is_kept() -> None:
    transition = decide(_kept(None, jobs={"a": dispatched(2)}), failure("a", 2), NOW)

    assert isinstance(transition, Transition)
    assert "expireAt" not in transition.changes
    assert transition.expiry is None


def test_a_redrive_keeps_the_run_and_its_statuses_again() -> None:
    run = replace(FAILED_IN_Q, definition=replace(TWO_PHASES, retention_days=7), expire_at=NOW)

    transition = plan_redrive(run, redrive(), NOW)

    assert isinstance(transition, Transition)
    assert transition.changes["expireAt"] is None
    assert transition.expiry == Expiry(None)


# -- the documents and the notifier -------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"status": "cancel_requested", "job": "a"},
            "'cancel_requested' is about the whole run, so it has no job",
        ),
        ({"status": "redrive_requested", "attempt": -1}, "a round >= 0, got -1"),
        ({"status": "workflow_redriven", "attempt": True}, "a round >= 0, got True"),
    ],
)
def test_a_run_level_status_with_a_job_or_a_bad_round_is_malformed(
    fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(EventError, match=message):
        status_from_document({"runId": "r", "workflow": "w", **fields})


def test_an_operation_round_trips_through_its_document_with_its_reason() -> None:
    event = cancel(2, reason="storm")
    again = status_from_document(event.to_document(NOW))

    assert (again.status, again.attempt, again.reason, again.key) == (
        "cancel_requested",
        2,
        "storm",
        "cancel_requested:2",
    )


def test_the_notifier_says_a_run_was_cancelled_and_why_or_redriven() -> None:
    ended = report(StatusName.WORKFLOW_CANCELLED, reason="wrong lake", error="cancelled: wrong lake")
    redriven = report(StatusName.WORKFLOW_REDRIVEN, attempt=2)

    assert compose(ended) == ("w: run cancelled", "w run r was cancelled: wrong lake.")
    assert compose(redriven) == (
        "w: run redriven",
        "w run r was redriven (redrive 2): it goes on from where it stopped.",
    )
