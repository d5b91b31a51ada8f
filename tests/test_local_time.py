"""Time on this machine, end to end through ``python -m cdk_app``: delayed retries (with and
without injected faults), a job stopped at its ``timeout`` as Lambda would and retried, a wait
job, a run deadline, and an approval answered from a second process while the dev server runs."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pymongo
import pytest
from rich.console import Console

from cdk_app.terminal.render import Progress
from runtime.definition.loader import load_workflow
from runtime.documents.run import StatusEvent
from runtime.service.notifier import compose
from runtime.statuses import StatusName
from runtime.store.mongo import MongoStore
from tests.cli_harness import CliResult, cli
from tests.test_dev_server import WAIT, dev_server, wait_until

REPO = Path(__file__).resolve().parent.parent
SPECS = REPO / "tests" / "specs" / "time"


@pytest.fixture
def run(mongo_uri: str, mongo_client: pymongo.MongoClient[dict]) -> Iterator[Any]:
    """``run SPEC --json`` in a database of its own, then its ``history --json``."""
    databases: list[str] = []

    def run_spec(spec: Path, *options: str, run_input: Any = None) -> tuple[CliResult, list[dict[str, Any]]]:
        databases.append(f"time_{uuid.uuid4().hex[:12]}")
        store = ("--mongo-uri", mongo_uri, "--database", databases[-1])
        argv = ["run", str(spec), "--json", *store, "--timeout", "60", *options]
        if run_input is not None:
            argv += ["--input", json.dumps(run_input)]
        result = cli(*argv)
        history = cli("history", result.report["run_id"], "--json", *store)
        return result, json.loads(history.stdout)

    yield run_spec
    for name in databases:
        mongo_client.drop_database(name)


def dates(history: list[dict[str, Any]], status: str, job: str) -> list[datetime]:
    return [
        datetime.fromisoformat(entry["date"])
        for entry in history
        if entry["status"] == status and entry["job"] == job
    ]


@pytest.mark.parametrize(
    "faults", [None, "reorder,duplicate=2", "crash=0.3"], ids=["no faults", "dup+reorder", "crash"]
)
def test_a_delayed_retry_waits_its_delay_then_backoff_times_longer(run: Any, faults: str | None) -> None:
    result, history = run(
        SPECS / "delayed_retry.yaml", *(("--faults", faults, "--seed", "5") if faults else ())
    )

    assert result.exit_code == 0, result.stderr
    assert result.jobs() == {"flaky": ("succeeded", 3)}
    failed = dates(history, "failed", "flaky")
    started = dates(history, "started", "flaky")
    assert len(failed) == 2
    assert len(started) == 3
    assert (started[1] - failed[0]).total_seconds() >= 1
    assert (started[2] - failed[1]).total_seconds() >= 2
    timers = [(entry["job"], entry["attempt"]) for entry in history if entry["status"] == "timer_fired"]
    assert timers == [("flaky", 2), ("flaky", 3)]


def test_a_failure_the_policy_does_not_retry_fails_the_run_at_once(run: Any) -> None:
    result, history = run(SPECS / "not_retried.yaml")

    assert result.exit_code == 1
    assert result.jobs() == {"flaky": ("failed", 1)}
    assert "RuntimeError, which its retry policy does not retry" in result.report["error"]
    assert len(dates(history, "started", "flaky")) == 1


def test_a_job_that_sleeps_past_its_timeout_fails_within_five_seconds_and_is_retried(
    run: Any, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    try:
        result, history = run(SPECS / "sleeps_past_timeout.yaml", run_input={"release": str(release)})
    finally:
        release.touch()  # lets the stopped attempt's thread end

    assert result.exit_code == 0, result.stderr
    assert result.jobs() == {"slow_start": ("succeeded", 2)}
    [started, _] = dates(history, "started", "slow_start")
    [failed] = dates(history, "failed", "slow_start")
    assert 2 <= (failed - started).total_seconds() < 5
    failure = next(entry for entry in history if entry["status"] == "failed")
    assert failure["error"].startswith("Lambda gave up on the invocation")
    assert "timed out" in failure["error"]


def test_a_wait_job_succeeds_after_its_wait_and_the_jobs_after_it_run(run: Any) -> None:
    result, history = run(SPECS / "waits.yaml")

    assert result.exit_code == 0, result.stderr
    assert result.report["jobs"]["pause"]["output"] == {"waited": 1}
    [before] = dates(history, "success", "before")
    [after] = dates(history, "started", "after_pause")
    assert (after - before).total_seconds() >= 1


def test_a_run_past_its_deadline_fails(run: Any) -> None:
    result, history = run(SPECS / "deadline.yaml")

    assert result.exit_code == 1
    assert result.report["error"] == "run deadline exceeded"
    assert [entry["status"] for entry in history][-2:] == ["timer_fired", "workflow_failed"]


def test_a_deadline_cancels_what_waits_and_runs_the_failure_handlers_first(run: Any) -> None:
    result, history = run(SPECS / "deadline_handled.yaml")

    assert result.exit_code == 1
    assert result.report["error"] == "run deadline exceeded"
    jobs = result.report["jobs"]
    assert jobs["pause"]["status"] == "cancelled"
    assert jobs["release_lock"]["status"] == "succeeded"
    assert jobs["release_lock"]["output"]["failure"] == {
        "phase": "work",
        "job": None,
        "attempt": None,
        "error": "run deadline exceeded",
        "reason": "failed",
    }
    assert [entry["status"] for entry in history][-1] == "workflow_failed"


def test_a_deadline_passing_while_the_failure_handlers_run_lets_them_finish(run: Any) -> None:
    result, history = run(SPECS / "deadline_during_handlers.yaml")

    assert result.exit_code == 1
    assert result.report["error"].startswith("job 'charge' failed after 1 attempt(s): ")
    assert result.jobs() == {
        "charge": ("failed", 1),
        "hold": ("succeeded", 1),
        "release_lock": ("succeeded", 1),
    }
    assert result.report["jobs"]["release_lock"]["output"]["failure"]["job"] == "charge"
    [failed] = dates(history, "failed", "charge")
    [released] = dates(history, "success", "release_lock")
    assert (released - failed).total_seconds() >= 2  # past the deadline of 1 s
    assert [entry["status"] for entry in history][-1] == "workflow_failed"


def test_an_approval_answered_from_a_second_process_while_the_dev_server_runs(tmp_path: Path) -> None:
    with dev_server(tmp_path, "--data", "data", "--workflows", str(SPECS)) as dev:
        run_id = dev.cli("start", str(SPECS / "approval.yaml")).stdout.strip()
        wait_until(lambda: "approval_requested" in _statuses(dev, run_id), "the approval to be requested")
        early = dev.cli("approve", run_id, "ship")
        approve = dev.cli("approve", run_id, "sign_off", "--output", '{"by": "ana"}')
        done = dev.cli("status", run_id, "--wait", WAIT, "--json")
        again = dev.cli("reject", run_id, "sign_off", "--reason", "too late")

    assert early.exit_code == 1
    assert "not an approval job" in early.stderr
    assert approve.exit_code == 0, approve.stderr
    assert approve.stdout == f"approval of sign_off in run {run_id} recorded\n"
    assert done.exit_code == 0, dev.stderr
    assert done.report["jobs"]["sign_off"]["output"] == {"by": "ana"}
    assert done.jobs()["ship"] == ("succeeded", 1)
    assert again.exit_code == 1
    assert "has ended" in again.stderr
    assert "python -m cdk_app approve" in dev.stderr  # progress tells how to answer


def test_a_rejection_fails_the_run_with_the_reason(tmp_path: Path) -> None:
    with dev_server(tmp_path, "--data", "data", "--workflows", str(SPECS)) as dev:
        run_id = dev.cli("start", str(SPECS / "approval.yaml")).stdout.strip()
        wait_until(lambda: "approval_requested" in _statuses(dev, run_id), "the approval to be requested")
        reject = dev.cli("reject", run_id, "sign_off", "--reason", "not today")
        done = dev.cli("status", run_id, "--wait", WAIT, "--json")

    assert reject.exit_code == 0, reject.stderr
    assert done.exit_code == 1
    assert done.report["error"] == "job 'sign_off': rejected: not today"
    assert done.jobs()["ship"] == ("upstream_failed", 0)


def _statuses(dev: Any, run_id: str) -> list[str]:
    history = dev.cli("history", run_id, "--json")
    return [entry["status"] for entry in history.listing] if history.exit_code == 0 else []


def test_the_approval_request_notification_gives_the_message_and_both_commands() -> None:
    event = StatusEvent(
        run_id="r-1",
        workflow="release",
        status=StatusName.APPROVAL_REQUESTED,
        phase="ship",
        job="sign_off",
        attempt=1,
        reason="Ship the build?",
    )

    subject, message = compose(event)

    assert subject == "release: job sign_off waits for approval"
    assert "Ship the build?" in message
    assert "python -m cdk_app approve r-1 sign_off" in message
    assert "python -m cdk_app reject r-1 sign_off" in message


def test_live_progress_shows_a_started_job_as_running_with_its_elapsed_time_until_it_ends() -> None:
    console = Console(record=True, width=100, color_system=None)
    workflow = load_workflow(SPECS / "delayed_retry.yaml")
    progress = Progress(console, workflow, cast(MongoStore, None))  # skips are read only at a phase's end
    begun = datetime(2026, 12, 2, 4, 0, tzinfo=UTC)
    started = StatusEvent(
        run_id="r",
        workflow="delayed_retry",
        status=StatusName.STARTED,
        phase="work",
        job="flaky",
        attempt=1,
        date=begun,
    )

    progress.status(started)
    progress.tick(begun + timedelta(seconds=12))
    progress.status(replace(started, status=StatusName.SUCCESS, date=begun + timedelta(seconds=13)))
    progress.tick(begun + timedelta(seconds=20))

    lines = [line.split() for line in console.export_text().splitlines()]
    assert lines == [
        ["▸", "flaky", "running", "attempt", "1"],
        ["▸", "flaky", "running", "attempt", "1", "12.00", "s"],
        ["✔", "flaky", "succeeded", "attempt", "1", "13.00", "s"],
    ]
