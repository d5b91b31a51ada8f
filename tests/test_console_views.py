"""What the run page is sent (``cdk_app.console.views.run_json``), from a run and its statuses
made by hand: the timeline's rows for jobs that wait (a wait, an approval) and for a fan-out,
and the marks the graph draws a conditional or a tolerated job with."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from cdk_app.console.views import run_json
from runtime.definition.loader import workflow_from_document
from runtime.documents.items import FanOut
from runtime.documents.run import JobRecord, StatusEvent
from runtime.statuses import JobState, StatusName
from tests.test_engine_decisions import run_of

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)

DEFINITION = workflow_from_document(
    {
        "workflow": "ingest",
        "phases": {
            "p": {
                "jobs": {
                    "fetch": {},
                    "cool_down": {"after": ["fetch"], "wait": 60},
                    "sign_off": {"after": ["cool_down"], "approval": {"timeout": 600}},
                    "fan": {"after": ["sign_off"], "for_each": "input.items"},
                    "maybe": {"after": ["fan"], "when": "input.go"},
                    "optional": {"after": ["fan"], "allow_failure": True},
                }
            }
        },
    }
)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def status(name: StatusName, job: str | None, attempt: int, seconds: float, **extra: Any) -> StatusEvent:
    return StatusEvent(
        run_id="r",
        workflow="ingest",
        phase="p",
        job=job,
        status=name,
        attempt=attempt,
        date=at(seconds),
        **extra,
    )


def attempts_of(sent: dict[str, Any], job: str) -> list[dict[str, Any]]:
    return [attempt for attempt in sent["attempts"] if attempt["job"] == job]


def test_the_timeline_has_a_row_for_each_wait_and_approval_with_the_time_it_waited() -> None:
    run = run_of(
        DEFINITION,
        jobs={
            "fetch": JobRecord(state=JobState.SUCCEEDED, attempt=1, claimed_at=at(0), finished_at=at(2)),
            "cool_down": JobRecord(state=JobState.SUCCEEDED, attempt=1, claimed_at=at(2), finished_at=at(62)),
            "sign_off": JobRecord(state=JobState.SUCCEEDED, attempt=1, claimed_at=at(62), finished_at=at(90)),
        },
    )
    statuses = [
        status(StatusName.STARTED, "fetch", 1, 0.5),
        status(StatusName.SUCCESS, "fetch", 1, 2),
        status(StatusName.TIMER_FIRED, "cool_down", 1, 62),
        status(StatusName.APPROVAL_REQUESTED, "sign_off", 1, 62),
        status(StatusName.APPROVED, "sign_off", 1, 90),
    ]

    sent = run_json(run, statuses, allow_actions=False)

    [wait] = attempts_of(sent, "cool_down")
    [approval] = attempts_of(sent, "sign_off")
    assert (wait["started"], wait["ended"], wait.get("kind")) == (
        at(2).isoformat(),
        at(62).isoformat(),
        "wait",
    )
    assert (approval["started"], approval["ended"], approval["status"], approval.get("kind")) == (
        at(62).isoformat(),
        at(90).isoformat(),
        "approved",
        "approval",
    )
    assert [attempt["job"] for attempt in sent["attempts"]] == ["fetch", "cool_down", "sign_off"]


def test_a_job_still_waiting_has_an_open_row_from_when_it_began_to_wait() -> None:
    run = run_of(
        DEFINITION,
        jobs={
            "fetch": JobRecord(state=JobState.SUCCEEDED, attempt=1),
            "cool_down": JobRecord(state=JobState.WAITING, attempt=1, claimed_at=at(2), due_at=at(62)),
        },
    )

    [wait] = attempts_of(run_json(run, [], allow_actions=False), "cool_down")

    assert (wait.get("kind"), wait["started"], wait["ended"], wait["status"]) == (
        "wait",
        at(2).isoformat(),
        None,
        "waiting",
    )


def test_a_fan_outs_row_spans_its_items_and_carries_their_counts() -> None:
    fan_out = FanOut(count=5, concurrency=2, done=4, failed=1)
    run = run_of(
        DEFINITION,
        jobs={"fan": JobRecord(state=JobState.SUCCEEDED, attempt=1, claimed_at=at(100), fan_out=fan_out)},
    )
    # The items' own reports are not read (a 10,000-item job has 20,000): the job's end is.
    statuses = [status(StatusName.SUCCESS, "fan", 1, 112.5)]

    [row] = attempts_of(run_json(run, statuses, allow_actions=False), "fan")

    assert (row["started"], row["ended"], row.get("kind")) == (
        at(100).isoformat(),
        at(112.5).isoformat(),
        "fan_out",
    )
    assert row["items"] == "4/5 done, 1 failed, 0 running"


def test_a_fan_out_still_running_has_an_open_row_from_its_first_item() -> None:
    fan_out = FanOut(count=5, concurrency=2, done=1)
    run = run_of(
        DEFINITION,
        jobs={"fan": JobRecord(state=JobState.DISPATCHED, attempt=1, claimed_at=at(100), fan_out=fan_out)},
    )

    [row] = attempts_of(run_json(run, [], allow_actions=False), "fan")

    assert (row["started"], row["ended"], row["status"]) == (at(100).isoformat(), None, "started")


def test_the_graph_is_told_which_jobs_are_conditional_and_which_may_fail() -> None:
    run = run_of(DEFINITION, jobs={"maybe": JobRecord(state=JobState.SKIPPED)})

    jobs = {
        job["name"]: job
        for phase in run_json(run, [], allow_actions=False)["phases"]
        for job in phase["jobs"]
    }

    assert (jobs["maybe"]["when"], jobs["maybe"]["allow_failure"], jobs["maybe"]["state"]) == (
        "input.go",
        False,
        "skipped",
    )
    assert (jobs["optional"]["when"], jobs["optional"]["allow_failure"]) == (None, True)
    assert (jobs["fetch"]["when"], jobs["fetch"]["allow_failure"]) == (None, False)


def test_the_graph_is_told_what_each_job_without_code_calls() -> None:
    definition = workflow_from_document(
        {
            "workflow": "calls",
            "phases": {
                "p": {
                    "jobs": {
                        "pay": {"invoke": "arn:aws:lambda:eu-west-1:123456789012:function:billing:live"},
                        "tell": {
                            "call": {
                                "service": "sns",
                                "action": "publish",
                                "resource": "arn:aws:sns:eu-west-1:123456789012:orders",
                            }
                        },
                        "look": {"http": {"url": "https://crm.example.com/x"}},
                        "own": {},
                    }
                }
            },
        }
    )

    jobs = {
        job["name"]: (job["kind"], job["calls"])
        for phase in run_json(run_of(definition), [], allow_actions=False)["phases"]
        for job in phase["jobs"]
    }

    assert jobs == {
        "pay": ("invoke", "invoke billing:live"),
        "tell": ("call", "sns publish orders"),
        "look": ("http", "GET crm.example.com"),
        "own": ("code", None),
    }
