"""``wait: {until: <JMESPath>}``: a wait job that waits until a time the run input or the outputs
before it give (ISO 8601 with its UTC offset); a time gone by succeeds at once, a value that is
not such a time fails the run saying so (docs/spec.md)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from runtime.definition.build import workflow_from_document
from runtime.definition.model import Job, Phase, Workflow
from runtime.documents.run import JobRecord, Run
from runtime.engine.decide import decide
from runtime.engine.timers import timer_event
from runtime.engine.transition import Transition
from runtime.errors import SpecError
from runtime.service.runs import initial_run
from runtime.statuses import JobState, RunState, StatusName
from tests.test_engine_decisions import NOW, START_KEY, jobs_of, report

SEND = Job(name="send_at", phase="p", wait_until="input.send_at")
MAIL = Job(name="mail", phase="p", after=("send_at",))


def running(run_input: Any, *jobs: Job, **records: JobRecord) -> Run:
    run = initial_run(Workflow(name="w", phases=(Phase(name="p", jobs=jobs),)), "r", run_input)
    return replace(run, jobs={**run.jobs, **records})


def transition(decision: object) -> Transition:
    assert isinstance(decision, Transition), decision
    return decision


def test_a_wait_until_a_time_of_the_input_waits_for_that_time() -> None:
    run = running({"send_at": "2030-01-02T10:00:00+01:00"}, SEND, MAIL)

    decision = transition(decide(run, report(StatusName.WORKFLOW_STARTED), NOW))

    due = NOW.replace(year=2030, month=1, day=2, hour=9, minute=0, second=0, microsecond=0)
    assert decision.dispatches == ()
    assert decision.changes["jobs.send_at"]["state"] == JobState.WAITING
    assert decision.changes["jobs.send_at"]["dueAt"] == due
    assert decision.wake_at == due


def test_its_timer_completes_it_with_the_time_it_waited_until_and_the_run_goes_on() -> None:
    due = NOW + timedelta(hours=2)
    record = JobRecord(state=JobState.WAITING, attempt=1, caused_by=START_KEY, due_at=due)
    run = running({"send_at": due.isoformat()}, SEND, MAIL, send_at=record)

    decision = transition(decide(run, timer_event(run, SEND), due))

    assert decision.changes["jobs.send_at.state"] == JobState.SUCCEEDED
    assert decision.changes["jobs.send_at.output"] == {"waited_until": due.isoformat()}
    assert jobs_of(decision) == [("mail", 1)]


def test_a_time_gone_by_succeeds_at_once_and_the_jobs_after_it_start() -> None:
    past = NOW - timedelta(days=1)
    run = running({"send_at": past.isoformat().replace("+00:00", "Z")}, SEND, MAIL)

    decision = transition(decide(run, report(StatusName.WORKFLOW_STARTED), NOW))

    assert decision.changes["jobs.send_at"]["state"] == JobState.SUCCEEDED
    assert decision.changes["jobs.send_at"]["output"] == {"waited_until": past.isoformat()}
    assert jobs_of(decision) == [("mail", 1)]
    assert decision.wake_at is None


@pytest.mark.parametrize(
    ("send_at", "reason"),
    [
        ("next tuesday", "input.send_at is 'next tuesday', not an ISO 8601 time"),
        (None, "input.send_at is null, not an ISO 8601 time"),
        (1767225600, "input.send_at is 1767225600, not an ISO 8601 time"),
        ("2030-01-02T10:00:00", "input.send_at is '2030-01-02T10:00:00', which has no UTC offset"),
    ],
    ids=["words", "missing", "a-number", "no-offset"],
)
def test_a_value_that_is_not_a_time_fails_the_run_saying_so(send_at: Any, reason: str) -> None:
    run = running({"send_at": send_at}, SEND, MAIL)

    decision = transition(decide(run, report(StatusName.WORKFLOW_STARTED), NOW))

    assert decision.changes["status"] == RunState.FAILED
    assert decision.changes["error"].startswith(f"the wait of 'send_at' failed: {reason}")
    assert decision.dispatches == ()


def test_the_spec_says_wait_until_and_the_loader_checks_its_expression() -> None:
    spec: dict[str, Any] = {
        "workflow": "w",
        "phases": {
            "p": {"jobs": {"a": {}, "later": {"after": ["a"], "wait": {"until": "results.a.send_at"}}}}
        },
    }
    job = workflow_from_document(spec).job("later")
    assert (job.wait_until, job.wait, job.runs_code) == ("results.a.send_at", None, False)
    assert Workflow.from_document(workflow_from_document(spec).to_document()).job("later") == job

    spec["phases"]["p"]["jobs"]["later"]["wait"] = {"until": "result.a.send_at"}
    with pytest.raises(SpecError, match="reads 'result'"):
        workflow_from_document(spec)
    spec["phases"]["p"]["jobs"]["later"]["wait"] = {"untill": "input.x"}
    with pytest.raises(SpecError, match="until"):
        workflow_from_document(spec)


@pytest.mark.parametrize(
    ("wait", "path", "message"),
    [
        ("soon", "$.phases.p.jobs.a.wait", "expected an integer or a mapping, got a string 'soon'"),
        (0, "$.phases.p.jobs.a.wait", "0 is out of range: must be between 1 and 31536000"),
        ({"until": 5}, "$.phases.p.jobs.a.wait.until", "expected a string, got an integer 5"),
        (
            {"until": "results.zz.t"},
            "$.phases.p.jobs.a.wait",
            "'wait' reads results.zz, but there is no job 'zz'",
        ),
    ],
    ids=["words", "zero", "until-a-number", "reads-no-job"],
)
def test_a_wait_the_loader_cannot_use_says_why_at_its_place(wait: Any, path: str, message: str) -> None:
    with pytest.raises(SpecError) as raised:
        workflow_from_document({"workflow": "w", "phases": {"p": {"jobs": {"a": {"wait": wait}}}}})

    assert [
        (str(problem.path), problem.message.split(" (quote")[0]) for problem in raised.value.problems
    ] == [(path, message)]
