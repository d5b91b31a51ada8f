"""The commands that operate runs, on the session's MongoDB server: ``runs``, ``history``,
``status --wait``, ``cancel`` and ``redrive``, their output for people and for scripts, every exit
code, and ``MONGODB_URI`` standing in for ``--mongo-uri``."""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pymongo
import pytest

from tests.cli_harness import CliResult, cli

REPO = Path(__file__).resolve().parent.parent
SPECS = REPO / "tests" / "specs" / "runner"
CATCH_THE_FISH = REPO / "workflows" / "catch_the_fish.yaml"


@pytest.fixture
def database(mongo_client: pymongo.MongoClient[dict]) -> Iterator[str]:
    name = f"operate_{uuid.uuid4().hex[:12]}"
    yield name
    mongo_client.drop_database(name)


@pytest.fixture
def store(mongo_uri: str, database: str) -> list[str]:
    """The options that point a command at the test's database."""
    return ["--mongo-uri", mongo_uri, "--database", database]


def ran(spec: Path, store: list[str]) -> str:
    """Run ``spec`` to its end with ``run``; its run id."""
    result = cli("run", str(spec), "--json", *store)
    assert result.report["status"] in ("succeeded", "failed"), result.stderr
    return str(result.report["run_id"])


def started(run_id: str, store: list[str], spec: Path = CATCH_THE_FISH) -> str:
    """A run recorded with ``start`` that nothing delivers: it stays running."""
    result = cli("start", str(spec), *store, "--run-id", run_id)
    assert result.exit_code == 0, result.stderr
    return run_id


# --- runs ------------------------------------------------------------------------------------------


@pytest.fixture
def three_runs(store: list[str]) -> tuple[str, str, str, datetime]:
    """A failed, a succeeded and a running run, created in that order, and a time between the
    first and the second."""
    failed = ran(SPECS / "retries_exhausted.yaml", store)
    time.sleep(0.01)
    between = datetime.now(UTC)
    time.sleep(0.01)
    succeeded = ran(SPECS / "flaky_retry.yaml", store)
    time.sleep(0.01)
    running = started("fish-running", store)
    return failed, succeeded, running, between


def test_runs_lists_newest_first_with_what_a_script_needs(
    store: list[str], three_runs: tuple[str, str, str, datetime]
) -> None:
    failed, succeeded, running, _ = three_runs

    result = cli("runs", "--json", *store)

    assert result.exit_code == 0
    assert [run["run_id"] for run in result.listing] == [running, succeeded, failed]
    newest = result.listing[0]
    assert set(newest) == {
        "run_id",
        "workflow",
        "status",
        "phase",
        "created_at",
        "updated_at",
        "error",
        "deploy_id",
    }
    assert (newest["workflow"], newest["status"], newest["phase"]) == (
        "catch_the_fish",
        "running",
        "thinking",
    )
    assert datetime.fromisoformat(newest["created_at"]) <= datetime.now(UTC)
    assert "doomed broke" in result.listing[2]["error"]


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--status", "failed"], ["failed"]),
        (["--status", "running"], ["running"]),
        (["--workflow", "flaky_retry"], ["succeeded"]),
        (["--workflow", "retries_exhausted", "--status", "succeeded"], []),
        (["--since", "BETWEEN"], ["running", "succeeded"]),
        (["--limit", "1"], ["running"]),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) and value and "--" in value[0] else None,
)
def test_runs_filters_by_workflow_status_time_and_count(
    store: list[str], three_runs: tuple[str, str, str, datetime], options: list[str], expected: list[str]
) -> None:
    between = three_runs[3].isoformat()
    argv = [between if option == "BETWEEN" else option for option in options]

    result = cli("runs", "--json", *argv, *store)

    assert result.exit_code == 0, result.stderr
    assert [run["status"] for run in result.listing] == expected


def test_runs_reads_a_naive_since_as_utc(
    store: list[str], three_runs: tuple[str, str, str, datetime]
) -> None:
    naive = three_runs[3].replace(tzinfo=None).isoformat()

    result = cli("runs", "--json", "--since", naive, *store)

    assert [run["status"] for run in result.listing] == ["running", "succeeded"]


def test_runs_for_people_is_a_table_with_relative_times_and_first_lines(
    store: list[str], three_runs: tuple[str, str, str, datetime]
) -> None:
    failed, succeeded, running, _ = three_runs

    result = cli("runs", *store)

    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    header = next(line for line in lines if "workflow" in line)
    assert header.split() == ["run", "workflow", "status", "phase", "deploy", "started", "updated", "error"]
    rows = [line for line in lines if "ago" in line]
    assert [row.split()[0] for row in rows] == [running, succeeded, failed]
    assert rows[2].split()[2] == "failed"
    assert "Traceback" not in result.stdout


def test_runs_says_when_there_are_none_and_when_there_may_be_more(
    store: list[str], three_runs: tuple[str, str, str, datetime]
) -> None:
    none = cli("runs", "--status", "cancelled", *store)
    limited = cli("runs", "--limit", "2", *store)

    assert (none.exit_code, none.stdout) == (0, "no runs\n")
    assert "the newest 2; --limit N shows more" in limited.stdout


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--since", "yesterday"], "--since 'yesterday' is not an ISO date or time"),
        (["--limit", "0"], "argument --limit: must be a whole number of runs, at least 1, got '0'"),
        (["--limit", "many"], "argument --limit: must be a whole number of runs, at least 1, got 'many'"),
        (["--status", "stuck"], "argument --status: invalid choice: 'stuck'"),
    ],
    ids=lambda value: value[0] if isinstance(value, list) else None,
)
def test_runs_refuses_bad_options_with_a_usage_exit(
    store: list[str], options: list[str], message: str
) -> None:
    result = cli("runs", *options, *store)

    assert result.exit_code == 2
    assert message in result.stderr
    assert result.stdout == ""


# --- history ---------------------------------------------------------------------------------------


def test_history_has_every_status_of_the_run_in_order(
    store: list[str], mongo_client: pymongo.MongoClient[dict], database: str
) -> None:
    run_id = ran(SPECS / "retries_exhausted.yaml", store)
    recorded = list(mongo_client[database]["statuses"].find({"runId": run_id}).sort("date", 1))

    result = cli("history", run_id, "--json", *store)

    assert result.exit_code == 0
    entries = result.listing
    assert [(e["status"], e["job"], e["attempt"]) for e in entries] == [
        (s["status"], s["job"], s["attempt"]) for s in recorded
    ]
    assert entries[0]["status"] == "workflow_started"
    # The run's end is its last run-level status; on a loaded machine the sibling's attempt may
    # start only after it, and the wrapper then records it not run.
    end = max(index for index, e in enumerate(entries) if e["job"] is None)
    assert entries[end]["status"] == "workflow_failed"
    assert {e["status"] for e in entries[end + 1 :]} <= {"not_run"}
    assert ("failed", "doomed", 2) in [(e["status"], e["job"], e["attempt"]) for e in entries]
    assert set(entries[0]) == {
        "date",
        "status",
        "phase",
        "job",
        "attempt",
        "error",
        "output",
        "reason",
        "index",
    }
    dates = [datetime.fromisoformat(e["date"]) for e in entries]
    assert dates == sorted(dates)
    success = next(e for e in entries if e["status"] == "success")
    assert success["output"] == {"stub": True, "job": "sibling"}


def test_history_for_people_is_a_timeline_with_attempts_and_first_lines_of_errors(store: list[str]) -> None:
    run_id = ran(SPECS / "retries_exhausted.yaml", store)

    result = cli("history", run_id, *store)

    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"retries_exhausted run {run_id}: failed (")
    timeline = lines[2:]
    assert timeline[0].split() == ["+0.000s", "workflow_started"]
    second_failure = next(line for line in timeline if "failed" in line and "attempt 2" in line)
    assert second_failure.split()[1:4] == ["work", "doomed", "failed"]
    assert "RuntimeError: doomed broke on attempt 2" in second_failure
    offsets = [float(line.split()[0].lstrip("+").rstrip("s")) for line in timeline]
    assert offsets == sorted(offsets)
    assert "Traceback" not in result.stdout


def test_history_of_an_unknown_run_exits_1(store: list[str]) -> None:
    result = cli("history", "no-such-run", *store)

    assert result.exit_code == 1
    assert result.stderr.startswith("python -m cdk_app history: error: no run 'no-such-run'")


# --- status --wait ---------------------------------------------------------------------------------


def test_status_wait_exits_0_for_a_succeeded_run(store: list[str]) -> None:
    run_id = ran(SPECS / "flaky_retry.yaml", store)

    result = cli("status", run_id, "--wait", *store)

    assert result.exit_code == 0
    assert f"flaky_retry run {run_id}: succeeded" in result.stdout


def test_status_wait_exits_1_for_a_failed_run_and_json_carries_the_errors(store: list[str]) -> None:
    run_id = ran(SPECS / "retries_exhausted.yaml", store)

    result = cli("status", run_id, "--wait", "5", "--json", *store)

    assert result.exit_code == 1
    report = result.report
    assert report["status"] == "failed"
    assert "job 'doomed' failed after 2 attempt(s)" in report["error"]
    doomed = report["jobs"]["doomed"]
    assert (doomed["status"], doomed["attempts"], doomed["output"]) == ("failed", 2, None)
    assert "RuntimeError: doomed broke on attempt 2" in doomed["error"]
    sibling = report["jobs"]["sibling"]
    assert (sibling["status"], sibling["error"], sibling["output"]) == (
        "succeeded",
        None,
        {"stub": True, "job": "sibling"},
    )


def test_status_wait_exits_3_when_the_run_is_still_running_when_the_wait_runs_out(store: list[str]) -> None:
    run_id = started("fish-waiting", store)
    began = time.monotonic()

    result = cli("status", run_id, "--wait", "0.5", "--json", *store)

    assert result.exit_code == 3
    assert 0.5 <= time.monotonic() - began < 5
    assert result.report["status"] == "running"


def test_status_without_wait_shows_any_run_and_exits_0(store: list[str]) -> None:
    run_id = ran(SPECS / "retries_exhausted.yaml", store)

    assert cli("status", run_id, *store).exit_code == 0


def test_status_wait_of_an_unknown_run_exits_1(store: list[str], database: str) -> None:
    result = cli("status", "no-such-run", "--wait", "1", *store)

    assert result.exit_code == 1
    assert f"unknown run 'no-such-run' in database '{database}'" in result.stderr


@pytest.mark.parametrize("seconds", ["0", "-1", "nan"])
def test_status_wait_needs_a_positive_number_of_seconds(store: list[str], seconds: str) -> None:
    result = cli("status", "any", "--wait", seconds, *store)

    assert result.exit_code == 2
    assert "--wait must be a positive number of seconds" in result.stderr
    assert math.isnan(float(seconds)) or f"got {float(seconds):g}" in result.stderr


# --- cancel and redrive ----------------------------------------------------------------------------


def test_cancel_records_the_request_once_with_its_reason(
    store: list[str], mongo_client: pymongo.MongoClient[dict], database: str
) -> None:
    run_id = started("fish-to-cancel", store)

    first = cli("cancel", run_id, "--reason", "wrong input", *store)
    again = cli("cancel", run_id, "--reason", "wrong input", *store)

    assert (first.exit_code, first.stdout) == (0, f"cancel of run {run_id} requested\n")
    assert (again.exit_code, again.stdout) == (
        0,
        f"cancel of run {run_id} was requested before (it is applied once)\n",
    )
    requests = list(mongo_client[database]["statuses"].find({"runId": run_id, "status": "cancel_requested"}))
    assert [(request["job"], request["reason"]) for request in requests] == [(None, "wrong input")]


@pytest.mark.parametrize(
    ("command", "spec", "message"),
    [
        pytest.param(
            "cancel",
            "retries_exhausted.yaml",
            "run {run} has already ended (failed): nothing to cancel",
            id="cancel-failed",
        ),
        pytest.param(
            "cancel",
            "flaky_retry.yaml",
            "run {run} has already ended (succeeded): nothing to cancel",
            id="cancel-succeeded",
        ),
        pytest.param(
            "redrive",
            "flaky_retry.yaml",
            "run {run} has succeeded: only a failed or cancelled run can be redriven",
            id="redrive-succeeded",
        ),
        pytest.param(
            "redrive",
            None,
            "run {run} is running: only a failed or cancelled run can be redriven",
            id="redrive-running",
        ),
    ],
)
def test_a_refused_operation_is_one_line_and_exit_1(
    store: list[str], command: str, spec: str | None, message: str
) -> None:
    run_id = ran(SPECS / spec, store) if spec is not None else started("fish-busy", store)

    result = cli(command, run_id, *store)

    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == f"python -m cdk_app {command}: error: {message.format(run=run_id)}\n"


@pytest.mark.parametrize("command", ["cancel", "redrive"])
def test_an_operation_on_an_unknown_run_exits_1(store: list[str], command: str) -> None:
    result = cli(command, "no-such-run", *store)

    assert result.exit_code == 1
    assert "no run 'no-such-run'" in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_redrive_of_a_failed_run_records_the_request(store: list[str]) -> None:
    run_id = ran(SPECS / "retries_exhausted.yaml", store)

    result = cli("redrive", run_id, *store)

    assert (result.exit_code, result.stdout) == (0, f"redrive of run {run_id} requested\n")


def test_status_wait_after_a_redrive_waits_for_the_redriven_run_not_the_failure_it_came_from(
    store: list[str],
) -> None:
    """``redrive`` then ``status --wait`` while nothing has applied the redrive yet (here nothing
    delivers it): the run is about to run again, so the wait runs out (exit 3) rather than
    reporting the failure the redrive reopens (exit 1)."""
    run_id = ran(SPECS / "retries_exhausted.yaml", store)
    assert cli("redrive", run_id, *store).exit_code == 0

    result = cli("status", run_id, "--wait", "0.5", "--json", *store)

    assert result.exit_code == 3, result.stderr


def test_status_watch_after_a_redrive_follows_the_redriven_run_to_its_end(
    store: list[str], mongo_client: pymongo.MongoClient[dict], database: str
) -> None:
    """The same for ``--watch``: it keeps drawing the failed run until the redrive is applied and
    the run ends again (here the test ends it, a second later, as the orchestrator would)."""
    run_id = ran(SPECS / "retries_exhausted.yaml", store)
    assert cli("redrive", run_id, *store).exit_code == 0
    runs = mongo_client[database]["state-machines"]
    ends = threading.Timer(1.0, lambda: runs.update_one({"_id": run_id}, {"$set": {"status": "succeeded"}}))
    ends.start()
    try:
        result = cli("status", run_id, "--watch", *store)
    finally:
        ends.join()

    assert result.exit_code == 0, result.stdout


# --- MONGODB_URI -----------------------------------------------------------------------------------

OPERATING_COMMANDS = [
    ["status", "any"],
    ["runs"],
    ["history", "any"],
    ["cancel", "any"],
    ["redrive", "any"],
    ["start", str(CATCH_THE_FISH)],
]


@pytest.mark.parametrize("argv", OPERATING_COMMANDS, ids=lambda argv: argv[0])
def test_mongodb_uri_stands_in_for_mongo_uri(
    argv: list[str], mongo_uri: str, database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MONGODB_URI", mongo_uri)

    result = cli(*argv, "--database", database)

    assert "no MongoDB given" not in result.stderr
    assert "cannot reach" not in result.stderr
    assert result.exit_code in (0, 1)  # reached the database; "any" is not a run


@pytest.mark.parametrize("argv", OPERATING_COMMANDS, ids=lambda argv: argv[0])
def test_without_mongo_uri_or_mongodb_uri_a_command_says_what_to_give(
    argv: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MONGODB_URI", raising=False)

    result = cli(*argv)

    assert result.exit_code == 2
    assert result.stderr == (
        f"python -m cdk_app {argv[0]}: error: no MongoDB given: pass --mongo-uri URI or set MONGODB_URI\n"
    )


def test_an_unreachable_mongodb_uri_is_named_as_such(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONGODB_URI", "mongodb://127.0.0.1:9/?directConnection=true")

    result = cli("runs")

    assert result.exit_code == 1
    assert "cannot reach MongoDB at mongodb://127.0.0.1:9/?directConnection=true (from MONGODB_URI)" in (
        result.stderr
    )


def test_mongo_uri_wins_over_mongodb_uri(
    mongo_uri: str, database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MONGODB_URI", "mongodb://127.0.0.1:9/?directConnection=true")

    result: CliResult = cli("runs", "--json", "--mongo-uri", mongo_uri, "--database", database)

    assert (result.exit_code, result.listing) == (0, [])
