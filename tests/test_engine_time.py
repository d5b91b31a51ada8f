"""The engine's decisions on time, without I/O: the retry policy (delay formula, seeded jitter,
``on``), wait jobs, approvals (approve, reject, timeout), the run deadline, and timers that fire
twice, late or after the run ended."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import timedelta

import pytest

from runtime.definition.model import Approval, Job, Phase, RetryPolicy, Workflow
from runtime.documents.run import JobRecord, Run, StatusEvent
from runtime.engine import retry
from runtime.engine.decide import decide
from runtime.engine.replay import replay
from runtime.engine.timers import APPROVAL_TIMED_OUT, RUN_DEADLINE_EXCEEDED, pending_timers, timer_event
from runtime.engine.transition import Rejection, Transition
from runtime.limits import LAMBDA_RETRY_DELAY
from runtime.service.runs import initial_run
from runtime.statuses import JobState, RunState, StatusName
from tests.test_engine_decisions import NOW, START_KEY, dispatched, failure, jobs_of, report, states_after

LAMBDA_GAVE_UP = "Lambda gave up on the invocation (RetriesExhausted)"


def workflow(*jobs: Job, timeout: int | None = None) -> Workflow:
    return Workflow(name="w", phases=(Phase(name="p", jobs=jobs),), timeout=timeout)


def running(definition: Workflow, **jobs: JobRecord) -> Run:
    run = initial_run(definition, "r", {})
    return replace(run, jobs={**run.jobs, **jobs})


def waiting(attempt: int = 1, due_in: float = 1) -> JobRecord:
    return JobRecord(
        state=JobState.WAITING, attempt=attempt, caused_by=START_KEY, due_at=NOW + timedelta(seconds=due_in)
    )


def fired(run: Run, job: str | None) -> StatusEvent:
    return timer_event(run, None if job is None else run.definition.job(job))


def transition(decision: object) -> Transition:
    assert isinstance(decision, Transition), decision
    return decision


# -- the retry policy --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "failures", "expected"),
    [
        (RetryPolicy(delay=5, jitter="none"), 1, 5),
        (RetryPolicy(delay=5, jitter="none"), 2, 10),
        (RetryPolicy(delay=5, jitter="none"), 3, 20),
        (RetryPolicy(delay=5, backoff=3, jitter="none"), 3, 45),
        (RetryPolicy(delay=100, max_delay=300, jitter="none"), 4, 300),
        (RetryPolicy(delay=0, jitter="none"), 5, 0),
    ],
)
def test_the_wait_before_the_next_attempt_is_delay_times_backoff_to_the_failures_capped(
    policy: RetryPolicy, failures: int, expected: float
) -> None:
    assert retry.retry_delay(policy, failures, random.Random(0)) == expected


def test_full_jitter_draws_uniformly_below_the_computed_delay_as_the_seed_says() -> None:
    policy = RetryPolicy(delay=10, backoff=2)
    draws = [retry.retry_delay(policy, 2, random.Random(seed)) for seed in range(200)]

    assert draws[:3] == [random.Random(seed).uniform(0, 20) for seed in range(3)]
    assert all(0 <= draw <= 20 for draw in draws)
    assert min(draws) < 5  # spread over the range, not a constant
    assert max(draws) > 15


def test_the_jitter_of_an_attempt_is_the_same_on_every_decision_and_differs_between_attempts() -> None:
    policy = RetryPolicy(delay=60)
    first = retry.retry_delay(policy, 1, retry.jitter_source("r", "a", 1))

    assert first == retry.retry_delay(policy, 1, retry.jitter_source("r", "a", 1))
    assert first != retry.retry_delay(policy, 1, retry.jitter_source("r", "a", 2))


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        ("ConnectionError: refused\nTraceback (last frames):\n...", "ConnectionError"),
        ("requests.exceptions.HTTPError: 503", "requests.exceptions.HTTPError"),
        (
            f"{LAMBDA_GAVE_UP}: TimeoutError: Task timed out after 2.00 seconds",
            "Lambda.Timeout",
        ),
        (
            "Lambda gave up on the invocation (RetriesExhausted): Runtime.ExitError: exit status 1",
            "Lambda.Error",
        ),
        ("the job failed without saying why", "Error"),
    ],
)
def test_the_error_type_is_the_exception_class_or_what_lambda_reported(error: str, kind: str) -> None:
    assert retry.error_type(error) == kind


def test_a_failure_with_a_delay_waits_for_its_timer_instead_of_dispatching() -> None:
    definition = workflow(Job(name="a", phase="p", retry=RetryPolicy(max=2, delay=1, jitter="none")))
    run = running(definition, a=dispatched())

    decision = transition(decide(run, failure("a", error="RuntimeError: flaky"), NOW))

    assert decision.dispatches == ()
    assert states_after(decision) == {"a": JobState.WAITING}
    assert decision.changes["jobs.a.attempt"] == 2
    assert decision.changes["jobs.a.dueAt"] == NOW + timedelta(seconds=1)
    assert decision.wake_at == NOW + timedelta(seconds=1)


def test_the_second_retry_waits_backoff_times_longer() -> None:
    definition = workflow(Job(name="a", phase="p", retry=RetryPolicy(max=2, delay=1, jitter="none")))
    run = running(definition, a=dispatched(attempt=2))

    decision = transition(decide(run, failure("a", attempt=2), NOW))

    assert decision.changes["jobs.a.dueAt"] == NOW + timedelta(seconds=2)


def test_the_timer_of_a_delayed_retry_dispatches_its_attempt() -> None:
    definition = workflow(Job(name="a", phase="p", retry=RetryPolicy(max=2, delay=1)))
    run = running(definition, a=waiting(attempt=2))

    decision = transition(decide(run, fired(run, "a"), NOW))

    assert jobs_of(decision) == [("a", 2)]
    assert states_after(decision) == {"a": JobState.DISPATCHED}
    assert decision.changes["jobs.a.causedBy"] == "timer_fired:a:2"


def test_a_redelivered_timer_of_a_delayed_retry_repeats_the_dispatch_a_crash_cut_short() -> None:
    """The timer's decision was written (the attempt is dispatched, caused by the timer), then the
    orchestrator died before invoking it: the redelivery must not be dropped as stale, so that
    the replay sends the attempt again (a success in the same case replays, so must this)."""
    definition = workflow(Job(name="a", phase="p", retry=RetryPolicy(max=2, delay=1)))
    run = running(definition, a=waiting(attempt=2))
    event = fired(run, "a")
    written = replace(
        run, jobs={"a": JobRecord(state=JobState.DISPATCHED, attempt=2, caused_by=event.key, claimed_at=NOW)}
    )

    assert decide(written, event, NOW + timedelta(minutes=1)) is None
    dispatches, _ = replay(written, event.key, NOW + timedelta(minutes=1), LAMBDA_RETRY_DELAY)
    assert [(job.job, job.attempt) for job in dispatches] == [("a", 2)]


def test_retries_exhausted_after_their_delays_fail_the_run() -> None:
    definition = workflow(Job(name="a", phase="p", retry=RetryPolicy(max=2, delay=1)))
    run = running(definition, a=dispatched(attempt=3))

    decision = transition(decide(run, failure("a", attempt=3, error="RuntimeError: still down"), NOW))

    assert decision.dispatches == ()
    assert decision.changes["status"] == RunState.FAILED
    assert decision.changes["error"] == "job 'a' failed after 3 attempt(s): RuntimeError: still down"


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        ("ConnectionError: refused", True),
        (
            f"{LAMBDA_GAVE_UP}: TimeoutError: Task timed out after 2.00 seconds",
            True,
        ),
        ("ValueError: bad input", False),
        ("Lambda gave up on the invocation (RetriesExhausted): Runtime.ExitError", False),
    ],
)
def test_only_failures_of_the_types_in_on_are_retried(error: str, retried: bool) -> None:
    policy = RetryPolicy(max=2, on=("ConnectionError", "Lambda.Timeout"))
    run = running(workflow(Job(name="a", phase="p", retry=policy)), a=dispatched())

    decision = transition(decide(run, failure("a", error=error), NOW))

    if retried:
        assert jobs_of(decision) == [("a", 2)]
    else:
        assert decision.dispatches == ()
        assert decision.changes["status"] == RunState.FAILED
        assert (
            f"failed with {retry.error_type(error)}, which its retry policy does not retry"
            in decision.changes["error"]
        )


# -- wait jobs -----------------------------------------------------------------------------------


def test_a_wait_job_starts_waiting_with_its_timer_and_no_dispatch() -> None:
    run = running(workflow(Job(name="pause", phase="p", wait=30)))

    decision = transition(decide(run, report(StatusName.WORKFLOW_STARTED), NOW))

    assert decision.dispatches == ()
    assert decision.changes["jobs.pause"]["state"] == JobState.WAITING
    assert decision.changes["jobs.pause"]["dueAt"] == NOW + timedelta(seconds=30)
    assert decision.wake_at == NOW + timedelta(seconds=30)


def test_a_wait_job_succeeds_with_what_it_waited_when_its_timer_fires_and_the_run_goes_on() -> None:
    definition = workflow(Job(name="pause", phase="p", wait=30), Job(name="b", phase="p", after=("pause",)))
    run = running(definition, pause=waiting())

    decision = transition(decide(run, fired(run, "pause"), NOW))

    assert decision.changes["jobs.pause.state"] == JobState.SUCCEEDED
    assert decision.changes["jobs.pause.output"] == {"waited": 30}
    assert jobs_of(decision) == [("b", 1)]


# -- approvals -----------------------------------------------------------------------------------

APPROVAL = Job(name="sign_off", phase="p", approval=Approval(timeout=600, message="Ship it?"))


def test_an_approval_job_waits_and_records_that_it_asks() -> None:
    run = running(workflow(APPROVAL))

    decision = transition(decide(run, report(StatusName.WORKFLOW_STARTED), NOW))

    assert decision.dispatches == ()
    assert decision.changes["jobs.sign_off"]["dueAt"] == NOW + timedelta(seconds=600)
    [asked] = decision.statuses
    assert (asked.status, asked.job, asked.attempt, asked.reason) == (
        StatusName.APPROVAL_REQUESTED,
        "sign_off",
        1,
        "Ship it?",
    )


def test_an_approval_succeeds_with_the_answers_output() -> None:
    run = running(workflow(APPROVAL, Job(name="ship", phase="p", after=("sign_off",))), sign_off=waiting())

    decision = transition(decide(run, report(StatusName.APPROVED, "sign_off", 1, output={"by": "ana"}), NOW))

    assert decision.changes["jobs.sign_off.output"] == {"by": "ana"}
    assert jobs_of(decision) == [("ship", 1)]


def test_a_rejection_fails_the_job_and_the_run_with_the_reason() -> None:
    run = running(workflow(APPROVAL), sign_off=waiting())

    decision = transition(decide(run, report(StatusName.REJECTED, "sign_off", 1, reason="not today"), NOW))

    assert decision.changes["jobs.sign_off.state"] == JobState.FAILED
    assert decision.changes["status"] == RunState.FAILED
    assert decision.changes["error"] == "job 'sign_off': rejected: not today"


def test_an_approval_nobody_answers_times_out() -> None:
    run = running(workflow(APPROVAL), sign_off=waiting())

    decision = transition(decide(run, fired(run, "sign_off"), NOW))

    assert decision.changes["status"] == RunState.FAILED
    assert APPROVAL_TIMED_OUT in decision.changes["error"]


def test_an_answer_after_the_timeout_or_a_second_answer_changes_nothing() -> None:
    timed_out = running(workflow(APPROVAL), sign_off=JobRecord(state=JobState.FAILED, attempt=1))
    timed_out = replace(timed_out, state=RunState.FAILED)
    approved = running(
        workflow(APPROVAL, Job(name="ship", phase="p", after=("sign_off",))),
        sign_off=JobRecord(state=JobState.SUCCEEDED, attempt=1, caused_by="approved:sign_off:1"),
        ship=dispatched(caused_by="approved:sign_off:1"),
    )

    assert isinstance(decide(timed_out, report(StatusName.APPROVED, "sign_off", 1), NOW), Rejection)
    assert isinstance(decide(approved, report(StatusName.REJECTED, "sign_off", 1), NOW), Rejection)
    # The approval's own redelivery finishes what followed from it, and finds nothing left.
    assert decide(approved, report(StatusName.APPROVED, "sign_off", 1), NOW) is None


def test_an_answer_to_a_job_that_is_not_an_approval_is_refused() -> None:
    run = running(workflow(Job(name="a", phase="p", wait=5)), a=waiting())

    decision = decide(run, report(StatusName.APPROVED, "a", 1), NOW)

    assert isinstance(decision, Rejection)
    assert "not an approval job" in decision.reason


# -- the run deadline ----------------------------------------------------------------------------


def test_the_start_sets_the_deadline_once() -> None:
    run = running(workflow(Job(name="a", phase="p"), timeout=3600))

    decision = transition(decide(run, report(StatusName.WORKFLOW_STARTED), NOW))

    assert decision.changes["deadline"] == NOW + timedelta(hours=1)
    assert decision.wake_at == NOW + timedelta(hours=1)
    later = replace(run, deadline=NOW + timedelta(hours=1), jobs={"a": dispatched()})
    assert decide(later, report(StatusName.WORKFLOW_STARTED), NOW + timedelta(minutes=5)) is None


def test_a_run_past_its_deadline_fails() -> None:
    run = replace(running(workflow(Job(name="a", phase="p"), timeout=60), a=dispatched()), deadline=NOW)

    decision = transition(decide(run, fired(run, None), NOW))

    assert decision.changes["status"] == RunState.FAILED
    assert decision.changes["error"] == RUN_DEADLINE_EXCEEDED
    assert [status.status for status in decision.statuses] == [StatusName.WORKFLOW_FAILED]


def test_a_redrive_starts_the_deadline_again_in_its_own_round() -> None:
    definition = workflow(Job(name="a", phase="p"), timeout=60)
    ended = replace(
        running(definition, a=JobRecord(state=JobState.FAILED, attempt=1)),
        state=RunState.FAILED,
        deadline=NOW - timedelta(hours=1),
        error=RUN_DEADLINE_EXCEEDED,
    )

    decision = transition(decide(ended, report(StatusName.REDRIVE_REQUESTED, attempt=1), NOW))

    assert decision.changes["deadline"] == NOW + timedelta(seconds=60)
    reopened = replace(ended, state=RunState.RUNNING, redrives=1, deadline=NOW + timedelta(seconds=60))
    assert isinstance(decide(reopened, fired(ended, None), NOW), Rejection)  # round 0's deadline


# -- timers firing twice, late, after the end ----------------------------------------------------


def test_a_timer_that_fires_again_after_it_was_applied_changes_nothing() -> None:
    definition = workflow(Job(name="a", phase="p", retry=RetryPolicy(max=2, delay=1)))
    before = running(definition, a=waiting(attempt=2))
    event = fired(before, "a")
    after = running(definition, a=dispatched(attempt=2, caused_by=event.key))

    decision = decide(after, event, NOW + timedelta(seconds=5))

    # Nothing to write: not a stale event either, so that the replay can repeat its dispatch
    # (test_a_redelivered_timer_of_a_delayed_retry_repeats_the_dispatch_a_crash_cut_short).
    assert decision is None


def test_a_timer_of_an_earlier_attempt_changes_nothing() -> None:
    definition = workflow(Job(name="a", phase="p", retry=RetryPolicy(max=3, delay=1)))
    run = running(definition, a=waiting(attempt=3))

    stale = StatusEvent(
        run_id="r", workflow="w", status=StatusName.TIMER_FIRED, phase="p", job="a", attempt=2
    )

    assert isinstance(decide(run, stale, NOW), Rejection)


@pytest.mark.parametrize("job", ["pause", None])
def test_a_timer_after_the_run_ended_changes_nothing(job: str | None) -> None:
    definition = workflow(Job(name="pause", phase="p", wait=5), timeout=60)
    run = replace(running(definition, pause=waiting()), deadline=NOW)
    ended = replace(run, state=RunState.CANCELLED, finished_by="cancel_requested")

    assert isinstance(decide(ended, fired(run, job), NOW), Rejection)


def test_the_pending_timers_are_the_waiting_jobs_and_the_deadline_earliest_first() -> None:
    definition = workflow(Job(name="a", phase="p", wait=50), Job(name="b", phase="p", wait=5), timeout=60)
    run = replace(
        running(definition, a=waiting(due_in=50), b=waiting(due_in=5)), deadline=NOW + timedelta(seconds=60)
    )

    assert [(due - NOW).total_seconds() for due, _ in pending_timers(run)] == [5, 50, 60]
    assert [event.key for _, event in pending_timers(run)] == [
        "timer_fired:b:1",
        "timer_fired:a:1",
        "timer_fired",
    ]
    assert pending_timers(replace(run, state=RunState.FAILED)) == []
