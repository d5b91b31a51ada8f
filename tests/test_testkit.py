"""The test kit (``cdk_app.testkit``) on its own: what each kind of fake does, the clock it
skips, the errors it gives for a test written wrong, and a job's real code run with its env.
The example project's tests (examples/testing) use it the way a user's suite does."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cdk_app.testkit import Faults, WorkflowTest, raises, returns, sequence
from runtime.clock import utcnow
from runtime.definition.model import Approval, Job, Phase, RetryPolicy, Workflow
from tests.engine_harness import workflow

ONE_JOB = workflow("one", {"p": {"work": {"retry": RetryPolicy(max=3)}}})


@pytest.fixture
def opened(mongo_uri: str) -> Iterator[list[WorkflowTest]]:
    tests: list[WorkflowTest] = []
    yield tests
    for test in tests:
        test.close()


def _open(opened: list[WorkflowTest], mongo_uri: str, spec: Any = ONE_JOB, **options: Any) -> WorkflowTest:
    test = WorkflowTest(spec, mongo_uri, **options)
    opened.append(test)
    return test


@pytest.mark.parametrize(
    ("fake", "state", "attempt", "output", "error"),
    [
        ({"rows": 3}, "succeeded", 1, {"rows": 3}, None),
        (returns([1, 2]), "succeeded", 1, [1, 2], None),
        (lambda event: {"seen": event["input"]}, "succeeded", 1, {"seen": {"n": 1}}, None),
        (ValueError("bad row"), "failed", 4, None, "ValueError: bad row"),
        (KeyError, "failed", 4, None, "KeyError"),
        ([raises(TimeoutError("slow")), {"ok": True}], "succeeded", 2, {"ok": True}, None),
        (sequence(RuntimeError("a"), RuntimeError("b"), returns(7)), "succeeded", 3, 7, None),
    ],
    ids=["value", "returns-list", "function", "exception", "exception-class", "list", "sequence"],
)
def test_each_kind_of_fake_gives_the_job_its_outcome(
    opened: list[WorkflowTest],
    mongo_uri: str,
    fake: Any,
    state: str,
    attempt: int,
    output: Any,
    error: str | None,
) -> None:
    test = _open(opened, mongo_uri, fakes={"work": fake})

    test.start({"n": 1})

    job = test.get().job("work")
    assert (job.status, job.attempts, job.output) == (state, attempt, output)
    assert (error or "") in (job.error or "")
    assert test.executions("work") == attempt


def test_the_clock_moves_only_when_told_and_fires_what_falls_due_on_the_way(
    opened: list[WorkflowTest], mongo_uri: str
) -> None:
    spec = Workflow(
        name="pauses",
        phases=(
            Phase(
                name="p",
                jobs=(
                    Job(name="short", phase="p", wait=3600),
                    Job(name="long", phase="p", wait=7200),
                    Job(name="after_short", phase="p", after=("short",)),
                ),
            ),
        ),
    )
    begin = datetime(2026, 1, 1, tzinfo=UTC)
    test = _open(opened, mongo_uri, spec, start_time=begin)
    test.start()
    assert test.now == begin

    test.advance(minutes=90)

    assert test.now == begin + timedelta(minutes=90)
    test.assert_run("running", jobs={"short": "succeeded", "after_short": "succeeded", "long": "waiting"})
    assert test.history()[-1].date is not None
    assert test.run_until_idle().status == "succeeded"
    assert test.now == begin + timedelta(hours=2), "jumped to the next timer, no further"
    assert utcnow() < begin + timedelta(days=365 * 10), "the real clock is the system's again"
    with pytest.raises(ValueError, match="only moves forward"):
        test.advance(hours=-1)


def test_run_until_idle_stops_at_an_approval_unless_it_may_time_out(
    opened: list[WorkflowTest], mongo_uri: str
) -> None:
    spec = Workflow(
        name="ask",
        phases=(
            Phase(name="p", jobs=(Job(name="ok", phase="p", approval=Approval(timeout=600, message="?")),)),
        ),
    )
    test = _open(opened, mongo_uri, spec)
    test.start()

    test.run_until_idle()
    test.assert_run("running", jobs={"ok": "waiting"})
    test.run_until_idle(let_approvals_time_out=True)
    test.assert_run("failed", jobs={"ok": "failed"})


def test_a_run_that_is_not_as_expected_is_described_with_a_diff_of_the_states(
    opened: list[WorkflowTest], mongo_uri: str
) -> None:
    test = _open(opened, mongo_uri, fakes={"work": ValueError("bad row")})
    test.start()

    with pytest.raises(AssertionError) as failure:
        test.assert_run("succeeded", jobs={"work": "succeeded"})

    message = str(failure.value)
    assert {"-run: succeeded", "+run: failed", "-work: succeeded", "+work: failed"} <= set(
        message.splitlines()
    )
    assert "  work: failed, attempt 4, job 'work' failed after 4 attempt(s): ValueError: bad row" in message
    assert "Traceback" not in message.split("\n\n")[-1], "the errors' first lines only"
    with pytest.raises(AssertionError, match=r"has no job 'wrk' \(did you mean 'work'\?\)"):
        test.assert_run("failed", jobs={"wrk": "failed"})


def test_a_fake_for_a_job_the_workflow_does_not_have_is_refused_with_a_suggestion(mongo_uri: str) -> None:
    with pytest.raises(
        ValueError,
        match=r"fakes name job 'wrok', which workflow 'one' does not have \(did you mean 'work'\?\)",
    ):
        WorkflowTest(ONE_JOB, mongo_uri, fakes={"wrok": 1})
    with pytest.raises(ValueError, match="duplicate=0"):
        Faults(duplicate=0)


def test_a_job_without_a_fake_runs_its_code_with_its_env(
    opened: list[WorkflowTest], mongo_uri: str, tmp_path: Path
) -> None:
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "greet.py").write_text(
        "import os\n\n\ndef handler(event, context):\n"
        "    return {'greeting': os.environ['GREETING'], 'to': event['input']}\n"
    )
    (tmp_path / "greet.yaml").write_text(
        "workflow: greet\nphases:\n  p:\n    jobs:\n"
        "      greet: {code: jobs/greet.py, env: {GREETING: hello}}\n"
    )
    test = _open(opened, mongo_uri, tmp_path / "greet.yaml")

    test.start("ana")

    assert test.get().job("greet").output == {"greeting": "hello", "to": "ana"}
    assert "GREETING" not in os.environ, "the job's env is the job's only"


def test_every_run_started_goes_on_and_the_verbs_act_on_the_last_one(
    opened: list[WorkflowTest], mongo_uri: str
) -> None:
    test = _open(opened, mongo_uri, workflow("waits", {"p": {"nap": {"wait": 60}}}))
    first = test.start(run_id="first").run_id
    second = test.start(run_id="second").run_id

    test.cancel("changed plans")
    test.advance(minutes=1)

    assert (test.get(first).status, test.get(second).status) == ("succeeded", "cancelled")


def test_a_rate_limited_fan_out_goes_on_window_by_window_in_virtual_time(
    opened: list[WorkflowTest], mongo_uri: str
) -> None:
    from runtime.definition.model_limits import RateLimit

    spec = workflow(
        "paced",
        {"p": {"charge": {"for_each": "input.customers", "rate_limit": RateLimit(limit=5, period=60)}}},
    )
    begin = datetime(2026, 1, 1, tzinfo=UTC)
    test = _open(opened, mongo_uri, spec, start_time=begin)
    test.start({"customers": list(range(12))})

    assert test.get().job("charge").items == {
        "count": 12,
        "done": 5,
        "failed": 0,
        "running": 7,
        "waiting": 0,
        "not_started": 0,
    }
    assert test.run_until_idle().status == "succeeded"
    assert test.now == begin + timedelta(minutes=2), "the third window's start, no further"
