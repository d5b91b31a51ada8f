"""The engine's decisions as tables of (run, event) -> transition: no MongoDB, no handlers, only
the engine, the documents' vocabulary and the definition model."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from runtime import limits
from runtime.definition.model import Job, Phase, Workflow
from runtime.documents.events import FailureRecord, JobEvent
from runtime.documents.leases import Lease
from runtime.documents.run import JobRecord, Run, StatusEvent
from runtime.engine.attempts import plan_give_up
from runtime.engine.decide import decide
from runtime.engine.joins import is_truthy, ready_jobs
from runtime.engine.progress import advance_phase, plan_failure, plan_progress, plan_success
from runtime.engine.replay import replay
from runtime.engine.transition import Rejection, Transition
from runtime.service.runs import initial_run
from runtime.statuses import JobState, RunState, StatusName
from tests.engine_harness import job_settings

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
START_KEY = "workflow_started"


def spec(phases: dict[str, dict[str, dict[str, Any]]]) -> Workflow:
    """A Workflow from ``{"phase": {"job": {"after": [...], "retries": n, "when": ...}}}``."""
    return Workflow(
        name="w",
        phases=tuple(
            Phase(
                name=phase,
                jobs=tuple(
                    Job(name=job, phase=phase, **job_settings({"retries": 1, **settings}))
                    for job, settings in jobs.items()
                ),
            )
            for phase, jobs in phases.items()
        ),
    )


def run_of(definition: Workflow, run_input: Any = None, **changes: Any) -> Run:
    """A running run of ``definition``; ``jobs`` given as ``name=JobRecord`` replace pending ones."""
    jobs = changes.pop("jobs", {})
    run = initial_run(definition, "r", {} if run_input is None else run_input)
    return replace(run, jobs={**run.jobs, **jobs}, **changes)


def dispatched(attempt: int = 1, caused_by: str = START_KEY) -> JobRecord:
    return JobRecord(state=JobState.DISPATCHED, attempt=attempt, caused_by=caused_by, claimed_at=NOW)


def succeeded(output: Any = None, attempt: int = 1) -> JobRecord:
    return JobRecord(state=JobState.SUCCEEDED, attempt=attempt, output=output)


SKIPPED = JobRecord(state=JobState.SKIPPED, caused_by=START_KEY, claimed_at=NOW)


def report(status: StatusName, job: str | None = None, attempt: int = 0, **fields: Any) -> StatusEvent:
    phase = "p" if job is not None else None
    return StatusEvent(
        run_id="r", workflow="w", status=status, phase=phase, job=job, attempt=attempt, **fields
    )


def success(job: str, attempt: int = 1, output: Any = None) -> StatusEvent:
    return report(StatusName.SUCCESS, job, attempt, output=output)


def failure(job: str, attempt: int = 1, error: str = "boom") -> StatusEvent:
    return report(StatusName.FAILED, job, attempt, error=error)


STARTED = report(StatusName.WORKFLOW_STARTED)


def states_after(transition: Transition | None) -> dict[str, str]:
    """Job -> state the transition writes, for jobs it writes whole or whose state it sets."""
    assert transition is not None
    result = {}
    for path, value in transition.changes.items():
        parts = path.split(".")
        if parts[0] == "jobs" and len(parts) == 2:
            result[parts[1]] = value["state"]
        elif parts[0] == "jobs" and parts[2] == "state":
            result[parts[1]] = value
    return result


def jobs_of(transition: Transition | None) -> list[tuple[str, int]]:
    assert transition is not None
    return [(event.job, event.attempt) for event in transition.dispatches]


def statuses_of(transition: Transition | None) -> list[tuple[str, str | None]]:
    assert transition is not None
    return [(status.status, status.phase) for status in transition.statuses]


TWO_PHASES = spec(
    {"p": {"a": {}, "b": {}, "c": {"after": ["a", "b"]}}, "q": {"d": {}, "e": {"after": ["d"]}}}
)


# -- starting and progressing ----------------------------------------------------------------------


def test_a_new_run_has_every_job_pending_in_the_first_phase() -> None:
    run = initial_run(TWO_PHASES, "r", {"mode": "fast"})
    assert (run.state, run.phase, run.version) == (RunState.RUNNING, "p", 0)
    assert set(run.jobs.values()) == {JobRecord()}


def test_the_start_dispatches_the_first_phase_roots_claimed_by_the_start_event() -> None:
    transition = decide(run_of(TWO_PHASES), STARTED, NOW)

    assert isinstance(transition, Transition)
    assert jobs_of(transition) == [("a", 1), ("b", 1)]
    assert transition.conditions == {
        "status": "running",
        "phase": "p",
        "jobs.a.state": "pending",
        "jobs.b.state": "pending",
    }
    assert transition.changes["jobs.a"] == {
        "state": "dispatched",
        "attempt": 1,
        "causedBy": START_KEY,
        "claimedAt": NOW,
        "startedAt": NOW,
    }
    assert transition.statuses == ()


def test_a_repeated_start_finds_nothing_to_do() -> None:
    run = run_of(TWO_PHASES, jobs={"a": dispatched(), "b": dispatched()})
    assert decide(run, STARTED, NOW) is None


@pytest.mark.parametrize(
    ("jobs", "ready"),
    [
        pytest.param({}, ["a", "b"], id="roots"),
        pytest.param({"a": succeeded()}, ["b"], id="one-root-done"),
        pytest.param({"a": succeeded(), "b": dispatched()}, [], id="join-waits"),
        pytest.param({"a": succeeded(), "b": SKIPPED}, ["c"], id="join-after-a-skip"),
        pytest.param(
            {"a": succeeded(), "b": succeeded(), "c": dispatched()}, [], id="nothing-pending-is-ready"
        ),
    ],
)
def test_ready_jobs_are_the_pending_ones_whose_predecessors_are_done(
    jobs: dict[str, JobRecord], ready: list[str]
) -> None:
    run = run_of(TWO_PHASES, jobs=jobs)
    states = {name: job.state for name, job in run.jobs.items()}
    assert [job.name for job in ready_jobs(TWO_PHASES.phase("p"), states)] == ready


# -- success -----------------------------------------------------------------------------------


def test_a_success_that_completes_a_join_carries_its_own_completion_and_dispatches_the_join() -> None:
    run = run_of(TWO_PHASES, jobs={"a": succeeded({"n": 1}), "b": dispatched()}, version=7)

    transition = plan_success(run, success("b", output={"n": 2}), NOW)

    assert transition is not None
    assert transition.conditions == {"version": 7}, "planned against the whole run as read"
    assert {
        key: transition.changes[key] for key in ("jobs.b.state", "jobs.b.output", "jobs.b.finishedAt")
    } == {
        "jobs.b.state": "succeeded",
        "jobs.b.output": {"n": 2},
        "jobs.b.finishedAt": NOW,
    }
    assert states_after(transition) == {"b": "succeeded", "c": "dispatched"}
    assert transition.dispatches[0].results == {"a": {"n": 1}, "b": {"n": 2}}
    assert transition.fallback == Transition(
        conditions={"jobs.b.state": "dispatched", "jobs.b.attempt": 1},
        changes={"jobs.b.state": "succeeded", "jobs.b.output": {"n": 2}, "jobs.b.finishedAt": NOW},
    )


def test_a_success_that_unblocks_nothing_writes_only_its_completion() -> None:
    run = run_of(TWO_PHASES, jobs={"a": dispatched(), "b": dispatched()}, version=2)

    transition = decide(run, success("a"), NOW)

    assert isinstance(transition, Transition)
    assert transition.conditions == {"version": 2}
    assert transition.fallback is not None
    assert transition.changes == transition.fallback.changes
    assert (transition.dispatches, transition.statuses) == ((), ())


def test_the_last_success_of_a_phase_advances_to_the_next_phase_once() -> None:
    run = run_of(TWO_PHASES, jobs={"a": succeeded(), "b": succeeded(), "c": dispatched(caused_by="x")})

    transition = plan_success(run, success("c"), NOW)

    assert transition is not None
    assert transition.changes["phases.p"] == {"completedBy": "success:c:1"}
    assert transition.changes["phase"] == "q"
    assert jobs_of(transition) == [("d", 1)]
    assert statuses_of(transition) == [("phase_completed", "p")]


def test_the_last_success_of_the_last_phase_ends_the_run() -> None:
    run = run_of(
        TWO_PHASES,
        phase="q",
        jobs={"a": succeeded(), "b": succeeded(), "c": succeeded(), "d": succeeded(), "e": dispatched()},
    )

    transition = plan_success(run, success("e"), NOW)

    assert transition is not None
    assert (transition.changes["status"], transition.changes["finishedBy"]) == ("succeeded", "success:e:1")
    assert statuses_of(transition) == [("phase_completed", "q"), ("workflow_succeeded", None)]
    assert transition.dispatches == ()


def test_advance_phase_starts_the_next_phase_or_ends_the_run() -> None:
    run = run_of(TWO_PHASES)
    changes, statuses, following, _ = advance_phase(run, TWO_PHASES.phase("p"), "k")
    assert (changes, [s.status for s in statuses], following) == (
        {"phases.p": {"completedBy": "k"}, "phase": "q"},
        ["phase_completed"],
        TWO_PHASES.phase("q"),
    )
    changes, statuses, following, _ = advance_phase(run, TWO_PHASES.phase("q"), "k")
    assert following is None
    assert changes == {"phases.q": {"completedBy": "k"}, "status": "succeeded", "finishedBy": "k"}
    assert [s.status for s in statuses] == ["phase_completed", "workflow_succeeded"]


# -- skipping --------------------------------------------------------------------------------------

SKIPS = spec(
    {
        "p": {
            "probe": {},
            "fast": {"after": ["probe"], "when": "input.mode == 'fast'"},
            "after_fast": {"after": ["fast"]},
            "join": {"after": ["fast", "slow"]},
            "slow": {"after": ["probe"], "when": "input.mode == 'slow'"},
        },
        "q": {"next": {}},
    }
)


def test_a_false_when_skips_the_job_and_every_job_that_can_only_run_through_it() -> None:
    run = run_of(SKIPS, {"mode": "slow"}, jobs={"probe": dispatched()})

    transition = plan_success(run, success("probe"), NOW)

    assert states_after(transition) == {
        "probe": "succeeded",
        "fast": "skipped",
        "after_fast": "skipped",
        "slow": "dispatched",
    }
    assert transition is not None
    assert transition.changes["jobs.fast"]["attempt"] == 0
    assert jobs_of(transition) == [("slow", 1)]


def test_a_phase_whose_remaining_jobs_are_all_skipped_completes() -> None:
    run = run_of(SKIPS, {"mode": "none"}, jobs={"probe": dispatched()})

    transition = plan_success(run, success("probe"), NOW)

    states = states_after(transition)
    assert {states[job.name] for job in SKIPS.phase("p").jobs} == {"succeeded", "skipped"}
    assert statuses_of(transition) == [("phase_completed", "p")]
    assert jobs_of(transition) == [("next", 1)]


# -- the `when` condition ------------------------------------------------------------------------

TRUTHINESS = [
    pytest.param(False, False, id="false"),
    pytest.param(None, False, id="null"),
    pytest.param("", False, id="empty-string"),
    pytest.param([], False, id="empty-array"),
    pytest.param({}, False, id="empty-object"),
    pytest.param(True, True, id="true"),
    pytest.param(0, True, id="zero"),
    pytest.param(0.0, True, id="zero-float"),
    pytest.param(1, True, id="one"),
    pytest.param("0", True, id="string-zero"),
    pytest.param("false", True, id="string-false"),
    pytest.param([0], True, id="array-of-zero"),
    pytest.param({"a": None}, True, id="object-of-null"),
]


@pytest.mark.parametrize(("value", "truthy"), TRUTHINESS)
def test_truthiness_is_jmespaths(value: Any, truthy: bool) -> None:
    assert is_truthy(value) is truthy


@pytest.mark.parametrize(("value", "truthy"), TRUTHINESS)
def test_a_when_runs_the_job_exactly_when_its_value_is_jmespath_true(value: Any, truthy: bool) -> None:
    definition = spec({"p": {"gated": {"when": "input.value"}}})

    transition = plan_progress(run_of(definition, {"value": value}), START_KEY, NOW)

    assert states_after(transition) == {"gated": "dispatched" if truthy else "skipped"}


def test_a_when_reads_the_results_of_the_jobs_it_runs_after() -> None:
    definition = spec({"p": {"probe": {}, "uses": {"after": ["probe"], "when": "results.probe.count"}}})
    run = run_of(definition, jobs={"probe": dispatched()})

    transition = plan_success(run, success("probe", output={"count": 0}), NOW)

    assert states_after(transition)["uses"] == "dispatched"


def test_a_when_that_cannot_be_evaluated_fails_the_run_and_dispatches_nothing() -> None:
    definition = spec({"p": {"a": {}, "ok": {}, "b": {"after": ["a"], "when": "abs(input.word)"}}})
    run = run_of(definition, {"word": "fish"}, jobs={"a": dispatched(), "ok": JobRecord()})

    transition = plan_progress(record_success_of(run, "a"), "success:a:1", NOW)

    assert transition is not None
    assert transition.changes["status"] == "failed"
    assert "the 'when' of 'b' failed" in transition.changes["error"]
    assert transition.conditions == {"status": "running", "phase": "p", "jobs.b.state": "pending"}
    assert transition.dispatches == ()
    assert statuses_of(transition) == [("workflow_failed", None)]


def record_success_of(run: Run, job: str) -> Run:
    return replace(run, jobs={**run.jobs, job: succeeded()})


# -- failure ---------------------------------------------------------------------------------------


def test_a_failure_with_attempts_left_dispatches_the_next_attempt() -> None:
    definition = spec({"p": {"a": {"retries": 2}}})
    run = run_of(definition, jobs={"a": dispatched(attempt=2)})

    transition = decide(run, failure("a", attempt=2), NOW)

    assert isinstance(transition, Transition)
    # ... and only while the failure handlers have not started: no job gets another attempt then.
    assert transition.conditions == {
        "jobs.a.state": "dispatched",
        "jobs.a.attempt": 2,
        "status": "running",
        "failure": None,
    }
    assert transition.changes == {
        "jobs.a.attempt": 3,
        "jobs.a.causedBy": "failed:a:2",
        "jobs.a.claimedAt": NOW,
        "jobs.a.error": "boom",
    }
    assert jobs_of(transition) == [("a", 3)]
    assert transition.statuses == ()


def test_a_failure_without_attempts_left_fails_the_job_and_the_run() -> None:
    definition = spec({"p": {"a": {"retries": 1}, "b": {}}})
    run = run_of(definition, jobs={"a": dispatched(attempt=2), "b": dispatched()})

    transition = plan_failure(run, failure("a", attempt=2), NOW)

    assert transition is not None
    assert states_after(transition) == {"a": "failed"}
    assert (transition.changes["status"], transition.changes["finishedBy"]) == ("failed", "failed:a:2")
    assert "failed after 2 attempt(s): boom" in transition.changes["error"]
    assert statuses_of(transition) == [("workflow_failed", None)]
    assert transition.dispatches == ()


def test_a_failure_after_the_run_ended_fails_only_the_job() -> None:
    definition = spec({"p": {"a": {}, "b": {}}})
    run = run_of(definition, state=RunState.FAILED, jobs={"a": dispatched()})

    transition = plan_failure(run, failure("a"), NOW)

    assert transition == Transition(
        conditions={"jobs.a.state": "dispatched", "jobs.a.attempt": 1},
        changes={"jobs.a.state": "failed", "jobs.a.error": "boom"},
    )


def test_a_failure_without_a_reason_says_so() -> None:
    definition = spec({"p": {"a": {"retries": 0}}})
    run = run_of(definition, jobs={"a": dispatched()})
    transition = plan_failure(run, report(StatusName.FAILED, "a", 1), NOW)
    assert transition is not None
    assert "the job failed without saying why" in transition.changes["error"]


# -- stale and duplicate events ----------------------------------------------------------------

ONE_JOB = spec({"p": {"a": {"retries": 2}, "b": {}}})
STALE = Rejection(action="ignored", reason="stale success")


@pytest.mark.parametrize(
    ("job", "event", "expected"),
    [
        pytest.param(dispatched(attempt=2), success("a", 1), STALE, id="success-of-a-superseded-attempt"),
        pytest.param(
            JobRecord(state=JobState.FAILED, attempt=1), success("a", 1), STALE, id="success-of-a-failed-job"
        ),
        pytest.param(JobRecord(), success("a", 1), STALE, id="success-of-a-job-never-dispatched"),
        pytest.param(succeeded(), success("a", 1), None, id="duplicate-success-nothing-left-to-do"),
        pytest.param(dispatched(attempt=2), failure("a", 1), None, id="failure-of-a-superseded-attempt"),
        pytest.param(succeeded(), failure("a", 1), None, id="failure-after-success"),
        pytest.param(
            dispatched(),
            success("ghost"),
            Rejection(action="dropped", reason="run 'r' has no job 'ghost'"),
            id="unknown-job",
        ),
        pytest.param(
            dispatched(),
            report(StatusName.PHASE_COMPLETED),
            Rejection(action="ignored", reason="the orchestrator does not act on 'phase_completed'"),
            id="not-the-orchestrators-business",
        ),
    ],
)
def test_stale_and_duplicate_events_change_nothing(job: JobRecord, event: StatusEvent, expected: Any) -> None:
    run = run_of(ONE_JOB, jobs={"a": job, "b": dispatched()})
    assert decide(run, event, NOW) == expected


def test_a_success_recorded_before_its_progress_was_written_finishes_the_progress() -> None:
    """The fallback recorded the completion alone and the handler died: the redelivery decides
    what follows from the stored state."""
    definition = spec({"p": {"a": {}, "b": {"after": ["a"]}}})
    run = run_of(definition, jobs={"a": succeeded()})

    transition = decide(run, success("a"), NOW)

    assert isinstance(transition, Transition)
    assert transition.fallback is None, "a completion recorded before is not recorded again"
    assert jobs_of(transition) == [("b", 1)]
    assert transition.changes["jobs.b"]["causedBy"] == "success:a:1"


def test_a_success_on_an_ended_run_records_only_the_completion() -> None:
    definition = spec({"p": {"a": {}, "b": {"after": ["a"]}}})
    run = run_of(definition, state=RunState.FAILED, jobs={"a": dispatched()})

    transition = plan_success(run, success("a"), NOW)

    assert transition is not None
    assert states_after(transition) == {"a": "succeeded"}
    assert transition.dispatches == ()


# -- replay after a crash ------------------------------------------------------------------------


def test_replay_repeats_what_the_same_event_caused_once_its_claims_are_old_enough() -> None:
    key = "success:c:1"
    run = run_of(
        TWO_PHASES,
        phase="q",
        jobs={
            "a": succeeded(),
            "b": succeeded(),
            "c": succeeded(),
            "d": JobRecord(state=JobState.DISPATCHED, attempt=1, caused_by=key, claimed_at=NOW),
        },
        completed_by={"p": key},
    )

    dispatches, statuses = replay(run, key, NOW + timedelta(seconds=60), timedelta(seconds=50))
    assert [(d.job, d.attempt) for d in dispatches] == [("d", 1)]
    assert [(s.status, s.phase) for s in statuses] == [("phase_completed", "p")]

    too_soon, _ = replay(run, key, NOW + timedelta(seconds=10), timedelta(seconds=50))
    assert too_soon == (), "a redelivery sooner than Lambda's retry is a duplicate of a live handling"
    other, nothing = replay(run, "success:a:1", NOW + timedelta(seconds=60), timedelta(0))
    assert (other, nothing) == ((), ())


def test_replay_repeats_the_end_of_a_run_and_dispatches_nothing_after_it() -> None:
    key = "failed:a:2"
    run = run_of(
        ONE_JOB,
        state=RunState.FAILED,
        finished_by=key,
        error="job 'a' failed",
        jobs={"b": JobRecord(state=JobState.DISPATCHED, attempt=1, caused_by=key)},
    )

    dispatches, statuses = replay(run, key, NOW, timedelta(0))

    assert dispatches == ()
    assert [(s.status, s.error) for s in statuses] == [("workflow_failed", "job 'a' failed")]


# -- what MongoDB would refuse ----------------------------------------------------------------------

BIG = {"blob": "x" * 131_000}


def test_a_success_that_would_overflow_the_run_document_fails_the_run_naming_the_job_and_sizes() -> None:
    dispatched = JobRecord(state=JobState.DISPATCHED, attempt=1)
    run = run_of(TWO_PHASES, jobs={"a": dispatched, "b": dispatched}, stored_bytes=16_700_000)

    transition = decide(run, success("a", output=BIG), NOW)

    assert isinstance(transition, Transition)
    assert transition.dispatches == ()
    assert transition.changes["status"] == "failed"
    assert transition.changes["jobs.a.state"] == "failed"
    assert (
        "the output of job 'a' (131,016 bytes as BSON) would grow the run document from 16,700,000"
        in (transition.changes["error"])
    )
    assert transition.conditions == {"status": "running", "jobs.a.state": "dispatched", "jobs.a.attempt": 1}


@pytest.mark.parametrize(
    "value",
    [
        BIG,
        {"n": 1, "big": 2**40, "f": 1.5, "t": True, "none": None, "when": NOW, "list": [1, "two", {"3": []}]},
    ],
)
def test_the_size_estimate_is_bsons_own(value: dict[str, Any]) -> None:
    import bson

    assert limits.bson_bytes(value) == len(bson.encode(value))


def test_the_same_success_fits_a_run_document_with_room_for_it() -> None:
    dispatched = JobRecord(state=JobState.DISPATCHED, attempt=1)
    run = run_of(TWO_PHASES, jobs={"a": dispatched, "b": dispatched}, stored_bytes=16_000_000)

    transition = decide(run, success("a", output=BIG), NOW)

    assert isinstance(transition, Transition)
    assert transition.changes["jobs.a.state"] == "succeeded"


def test_a_write_that_cannot_be_stored_after_the_run_ended_is_left_out() -> None:
    dispatched = JobRecord(state=JobState.DISPATCHED, attempt=1)
    run = run_of(TWO_PHASES, jobs={"a": dispatched}, state=RunState.FAILED, stored_bytes=16_770_000)

    decision = decide(run, success("a", output=BIG), NOW)

    assert isinstance(decision, Rejection)
    assert decision.reason.startswith("the run has ended, and the output of job 'a'")


# -- Lambda giving up on an invocation -------------------------------------------------------------

RECORD = FailureRecord(
    job_event=JobEvent(run_id="r", workflow="w", phase="p", job="a", attempt=1),
    request_id="req-1",
    condition="RetriesExhausted",
    error="Lambda gave up",
)


def lease(owner: str, expires_in: timedelta) -> Lease:
    return Lease(lease_id="r/a/1", owner=owner, token="t", expires_at=NOW + expires_in, workflow="w")


@pytest.mark.parametrize(
    ("terminal", "held", "expected"),
    [
        pytest.param(None, None, "failed", id="never-started"),
        pytest.param(None, lease("req-1", timedelta(seconds=20)), "failed", id="its-own-live-lease"),
        pytest.param(
            None, lease("req-2", -timedelta(seconds=1)), "failed", id="another-invocations-expired-lease"
        ),
        pytest.param(
            None,
            lease("req-2", timedelta(seconds=20)),
            "another invocation holds a live lease on the attempt",
            id="another-invocations-live-lease",
        ),
        pytest.param(success("a"), None, "the attempt already reported its end", id="already-succeeded"),
        pytest.param(failure("a"), None, "the attempt already reported its end", id="already-failed"),
    ],
)
def test_lambda_giving_up_counts_as_the_attempts_failure_unless_the_attempt_is_accounted_for(
    terminal: StatusEvent | None, held: Lease | None, expected: str
) -> None:
    decision = plan_give_up(RECORD, terminal, held, NOW)
    if isinstance(decision, Rejection):
        assert (decision.action, decision.reason) == ("ignored", expected)
    else:
        assert (decision.status, decision.job, decision.attempt, decision.error) == (
            expected,
            "a",
            1,
            "Lambda gave up",
        )


def test_the_engine_imports_without_mongodb() -> None:
    code = "import sys, runtime.engine.progress; assert 'pymongo' not in sys.modules, sorted(sys.modules)"
    root = Path(__file__).resolve().parent.parent
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)
