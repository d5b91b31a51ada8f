"""Where time meets control flow: a run deadline, a rejected or timed-out approval and a delayed
retry under ``allow_failure`` and ``on_failure``. Decisions as (run, event) -> transition, through
specs compiled by the real loader."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from runtime.definition.model import HANDLERS_PHASE
from runtime.documents.failures import Failure
from runtime.documents.run import JobRecord, Run
from runtime.engine.decide import decide
from runtime.engine.timers import APPROVAL_TIMED_OUT, RUN_DEADLINE_EXCEEDED, pending_timers, timer_event
from runtime.engine.transition import Rejection
from runtime.statuses import JobState, RunState, StatusName
from tests.test_engine_decisions import (
    NOW,
    START_KEY,
    dispatched,
    failure,
    jobs_of,
    report,
    run_of,
    states_after,
    success,
)
from tests.test_engine_flow import compiled, decided


def waiting(attempt: int = 1) -> JobRecord:
    return JobRecord(state=JobState.WAITING, attempt=attempt, caused_by=START_KEY, due_at=NOW, error="boom")


DEADLINED = compiled(
    {"p": {"a": {}, "pause": {"wait": 600}, "later": {"after": ["a"]}}},
    timeout=60,
    on_failure={"release": {}},
)


def test_a_deadline_runs_the_failure_handlers_with_the_deadline_as_the_failure() -> None:
    run = replace(run_of(DEADLINED, jobs={"a": dispatched(), "pause": waiting()}), deadline=NOW)

    transition = decided(run, timer_event(run, None))

    assert "status" not in transition.changes  # the run ends once the handlers have finished
    assert states_after(transition) == {
        "a": JobState.CANCELLED,
        "pause": JobState.CANCELLED,
        "release": JobState.DISPATCHED,
    }
    assert transition.changes["phase"] == HANDLERS_PHASE
    assert transition.dispatches[0].failure == {
        "phase": "p",
        "job": None,
        "attempt": None,
        "error": RUN_DEADLINE_EXCEEDED,
        "reason": "failed",
    }


def test_the_deadline_firing_again_once_the_handlers_started_changes_nothing() -> None:
    run = replace(run_of(DEADLINED, jobs={"a": dispatched(), "pause": waiting()}), deadline=NOW)
    event = timer_event(run, None)
    handling = replace(
        run,
        phase=HANDLERS_PHASE,
        failure=Failure(reason="failed", phase="p", error=RUN_DEADLINE_EXCEEDED, caused_by=event.key),
        jobs={**run.jobs, "a": JobRecord(state=JobState.CANCELLED, attempt=1), "release": dispatched()},
    )

    assert decide(handling, event, NOW + timedelta(seconds=1)) is None


def handling_a(run: Run) -> Run:
    """``run`` (of ``DEADLINED``) whose failure handler ``release`` runs because ``a`` failed."""
    failed_a = Failure(
        reason="failed", phase="p", job="a", attempt=1, error="job 'a' failed", caused_by="failed:a:1"
    )
    jobs = {**run.jobs, "a": JobRecord(state=JobState.FAILED, attempt=1), "release": dispatched()}
    return replace(run, phase=HANDLERS_PHASE, failure=failed_a, jobs=jobs)


def test_a_deadline_while_the_handlers_run_lets_them_finish_and_the_run_keeps_its_failure() -> None:
    """The handlers started before the deadline: it cancels nothing (``release`` may hold a lock
    to give back), and the run ends with the failure that started them."""
    handling = handling_a(replace(run_of(DEADLINED, jobs={"pause": waiting()}), deadline=NOW))

    fired = decide(handling, timer_event(handling, None), NOW + timedelta(seconds=1))

    assert isinstance(fired, Rejection)
    assert fired.action == "ignored"
    assert "the failure handlers run to their end" in fired.reason
    assert [event.key for _, event in pending_timers(handling)] == ["timer_fired:pause:1"]
    ended = decided(handling, replace(success("release"), phase=HANDLERS_PHASE))
    assert ended.changes["status"] == RunState.FAILED
    assert ended.changes["error"] == "job 'a' failed"


def test_once_the_handlers_run_the_deadline_is_no_longer_a_timer_of_the_run() -> None:
    """Whatever started the handlers (here the deadline itself), the sweep finds only their own
    timers: a past deadline is not fired again at every sweep."""
    run = replace(run_of(DEADLINED, jobs={"pause": waiting()}), deadline=NOW)
    deadline = timer_event(run, None)
    handling = replace(
        run,
        phase=HANDLERS_PHASE,
        failure=Failure(reason="failed", phase="p", error=RUN_DEADLINE_EXCEEDED, caused_by=deadline.key),
        jobs={**run.jobs, "pause": JobRecord(state=JobState.CANCELLED, attempt=1), "release": waiting()},
    )

    assert [event.key for _, event in pending_timers(run)] == ["timer_fired:pause:1", deadline.key]
    assert [event.key for _, event in pending_timers(handling)] == ["timer_fired:release:1"]


def test_a_deadline_without_handlers_cancels_what_waits_and_fails_the_run() -> None:
    definition = compiled({"p": {"a": {}, "pause": {"wait": 600}}}, timeout=60)
    run = replace(run_of(definition, jobs={"a": dispatched(), "pause": waiting()}), deadline=NOW)

    transition = decided(run, timer_event(run, None))

    assert transition.changes["status"] == RunState.FAILED
    assert transition.changes["error"] == RUN_DEADLINE_EXCEEDED
    assert states_after(transition) == {"a": JobState.CANCELLED, "pause": JobState.CANCELLED}
    assert [status.status for status in transition.statuses] == [StatusName.WORKFLOW_FAILED]


APPROVALS = compiled(
    {
        "p": {
            "sign_off": {"approval": {"timeout": 600}, "allow_failure": True},
            "ship": {"after": ["sign_off"]},
            "notify": {"after": ["sign_off"], "join": "any"},
        }
    }
)


def test_a_rejected_approval_that_may_fail_lets_the_run_go_on() -> None:
    run = run_of(APPROVALS, jobs={"sign_off": waiting()})

    transition = decided(run, report(StatusName.REJECTED, "sign_off", 1, reason="not today"))

    assert transition.changes["jobs.sign_off.state"] == JobState.FAILED
    assert transition.changes["jobs.sign_off.error"] == "rejected: not today"
    assert states_after(transition)["ship"] == JobState.UPSTREAM_FAILED  # join all: sign_off failed
    assert states_after(transition)["notify"] == JobState.UPSTREAM_FAILED  # any: none succeeded
    assert transition.changes["status"] == RunState.SUCCEEDED  # nothing failed the run


def test_a_tolerated_rejection_recorded_alone_is_progressed_when_it_is_decided_again() -> None:
    """The rejection's write lost to another handler, so only its fallback (the job's failure)
    was recorded: deciding the same event again does what followed."""
    rejected = report(StatusName.REJECTED, "sign_off", 1, reason="not today")
    fallback = decided(run_of(APPROVALS, jobs={"sign_off": waiting()}), rejected).fallback
    assert fallback is not None
    assert "jobs.ship" not in fallback.changes
    recorded = run_of(APPROVALS, jobs={"sign_off": JobRecord(state=JobState.FAILED, attempt=1, error="x")})

    again = decided(recorded, rejected)

    assert states_after(again) == {"ship": JobState.UPSTREAM_FAILED, "notify": JobState.UPSTREAM_FAILED}
    assert again.changes["status"] == RunState.SUCCEEDED


def test_an_approval_that_times_out_and_may_fail_lets_the_run_end_succeeded() -> None:
    definition = compiled({"p": {"sign_off": {"approval": {"timeout": 600}, "allow_failure": True}}})
    run = run_of(definition, jobs={"sign_off": waiting()})

    transition = decided(run, timer_event(run, definition.job("sign_off")))

    assert transition.changes["jobs.sign_off.error"] == APPROVAL_TIMED_OUT
    assert transition.changes["status"] == RunState.SUCCEEDED


def test_a_rejection_runs_the_failure_handlers_with_the_approval_as_the_failed_job() -> None:
    definition = compiled({"p": {"sign_off": {"approval": {"timeout": 600}}}}, on_failure={"release": {}})
    run = run_of(definition, jobs={"sign_off": waiting()})

    transition = decided(run, report(StatusName.REJECTED, "sign_off", 1, reason="no"))

    assert jobs_of(transition) == [("release", 1)]
    assert transition.dispatches[0].failure == {
        "phase": "p",
        "job": "sign_off",
        "attempt": 1,
        "error": "job 'sign_off': rejected: no",
        "reason": "failed",
    }


RETRYING = compiled(
    {"p": {"a": {"retry": {"max": 3, "delay": 30}}, "b": {"retries": 0}}},
    on_failure={"release": {"retry": {"max": 1, "delay": 5, "jitter": "none"}}},
)


def handling_b(**jobs: JobRecord) -> Run:
    """A run of ``RETRYING`` whose handlers run because ``b`` failed."""
    failed_b = Failure(
        reason="failed", phase="p", job="b", attempt=1, error="b failed", caused_by="failed:b:1"
    )
    return run_of(
        RETRYING,
        phase=HANDLERS_PHASE,
        failure=failed_b,
        jobs={"b": JobRecord(state=JobState.FAILED, attempt=1), "release": dispatched(), **jobs},
    )


def test_a_job_waiting_to_retry_when_the_handlers_start_gets_no_other_attempt() -> None:
    handling = handling_b(a=waiting(attempt=2))

    transition = decided(handling, timer_event(handling, RETRYING.job("a")))

    assert jobs_of(transition) == []
    assert transition.changes["jobs.a.state"] == JobState.FAILED


def test_a_failure_handler_retries_after_its_delay() -> None:
    handling = handling_b(a=JobRecord(state=JobState.CANCELLED, attempt=1))

    delayed = decided(handling, replace(failure("release", 1), phase=HANDLERS_PHASE))
    assert delayed.dispatches == ()
    assert delayed.wake_at == NOW + timedelta(seconds=5)

    waited = replace(handling, jobs={**handling.jobs, "release": waiting(attempt=2)})
    dispatch = decided(waited, timer_event(waited, RETRYING.job("release")))
    assert jobs_of(dispatch) == [("release", 2)]


def test_a_redrive_that_starts_a_wait_job_sets_its_timer() -> None:
    """The wait job was cancelled with its run; the redrive starts it again. Without the run's
    ``wakeAt`` lowered to its due time no sweep would find the timer, and the run would wait for
    good."""
    definition = compiled({"p": {"pause": {"wait": 30}}})
    cancelled = replace(
        run_of(definition, jobs={"pause": JobRecord(state=JobState.CANCELLED, attempt=1)}),
        state=RunState.CANCELLED,
    )

    transition = decided(cancelled, report(StatusName.REDRIVE_REQUESTED, attempt=1))

    assert states_after(transition)["pause"] == JobState.WAITING
    assert transition.wake_at == NOW + timedelta(seconds=30)
