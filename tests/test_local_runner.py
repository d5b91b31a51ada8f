"""The local runner end to end: ``python -m cdk_app run|start|status`` over real specs and job
code, on the session's MongoDB server, without and with injected faults."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymongo
import pytest

from tests.cli_harness import CliResult, cli

REPO = Path(__file__).resolve().parent.parent
SPECS = REPO / "tests" / "specs" / "runner"
CATCH_THE_FISH = REPO / "workflows" / "catch_the_fish.yaml"


@pytest.fixture
def database(mongo_client: pymongo.MongoClient[dict]) -> Iterator[str]:
    name = f"runner_{uuid.uuid4().hex[:12]}"
    yield name
    mongo_client.drop_database(name)


@pytest.fixture
def run(mongo_uri: str, mongo_client: pymongo.MongoClient[dict]) -> Iterator[Any]:
    """``run SPEC --json`` in a database of its own, dropped afterwards."""
    databases: list[str] = []

    def run_spec(spec: Path, *options: str, run_input: dict[str, Any] | None = None) -> CliResult:
        databases.append(f"runner_{uuid.uuid4().hex[:12]}")
        argv = ["run", str(spec), "--json", "--mongo-uri", mongo_uri, "--database", databases[-1]]
        if run_input is not None:
            argv += ["--input", json.dumps(run_input)]
        return cli(*argv, "--timeout", "60", *options)

    yield run_spec
    for name in databases:
        mongo_client.drop_database(name)


# --- outcomes without faults -----------------------------------------------------------------------

CASES: dict[str, tuple[Path, dict[str, Any] | None]] = {
    "catch_the_fish": (CATCH_THE_FISH, None),
    "fan_out": (SPECS / "fan_out.yaml", None),
    "joins": (SPECS / "joins.yaml", None),
    "when_input": (SPECS / "when_input.yaml", {"mode": "slow"}),
    "when_results": (SPECS / "when_results.yaml", {"broken": True, "size": 20}),
    "flaky_retry": (SPECS / "flaky_retry.yaml", None),
    "retries_exhausted": (SPECS / "retries_exhausted.yaml", None),
    "outputs": (SPECS / "outputs.yaml", {"base": 10}),
    "next_order": (SPECS / "next_order.yaml", None),
    "skipped_phase": (SPECS / "skipped_phase.yaml", {}),
    "empty_input": (SPECS / "empty_input.yaml", None),
    "folder_code": (SPECS / "folder_code.yaml", {"name": "fish"}),
    "late_failure": (SPECS / "late_failure.yaml", None),
    "not_json": (SPECS / "not_json.yaml", None),
    "wide_fan_out": (SPECS / "wide_fan_out.yaml", None),
}
"""Specs whose outcome does not depend on timing: what a fault-injected run must reproduce."""

EXPECTED: dict[str, tuple[str, dict[str, tuple[str, int]]]] = {
    "catch_the_fish": (
        "succeeded",
        {
            job: ("succeeded", 1)
            for job in [
                "buy_fishing_gear",
                "rent_a_boat",
                "go_to_fishing_ground",
                "cast_fishing_pole",
                "drink_beer",
                "catch_fish",
                "go_home",
                "clean",
                "cook",
            ]
        },
    ),
    "fan_out": (
        "succeeded",
        {
            job: ("succeeded", 1)
            for job in ["split", "part_1", "part_2", "part_3", "part_4", "part_5", "merge"]
        },
    ),
    "joins": ("succeeded", {job: ("succeeded", 1) for job in ["left", "right", "both", "extra", "last"]}),
    "when_input": (
        "succeeded",
        {
            "probe": ("succeeded", 1),
            "fast": ("skipped", 0),
            "after_fast": ("skipped", 0),
            "slow": ("succeeded", 1),
            "after_slow": ("succeeded", 1),
            "report": ("succeeded", 1),
        },
    ),
    "when_results": (
        "succeeded",
        {
            "inspect": ("succeeded", 1),
            "repair": ("succeeded", 1),
            "celebrate": ("skipped", 0),
            "big_only": ("succeeded", 1),
        },
    ),
    "flaky_retry": (
        "succeeded",
        {"before": ("succeeded", 1), "flaky": ("succeeded", 3), "after_flaky": ("succeeded", 1)},
    ),
    "retries_exhausted": (
        "failed",
        {
            "doomed": ("failed", 2),
            "sibling": ("succeeded", 1),
            "after_doomed": ("upstream_failed", 0),
            "unreached": ("pending", 0),
        },
    ),
    "outputs": ("succeeded", {job: ("succeeded", 1) for job in ("one", "two", "three", "four")}),
    "next_order": ("succeeded", {job: ("succeeded", 1) for job in ("a_job", "b_job", "c_job", "d_job")}),
    "skipped_phase": (
        "succeeded",
        {
            "prepare": ("succeeded", 1),
            "maybe": ("skipped", 0),
            "also_maybe": ("skipped", 0),
            "after_maybe": ("skipped", 0),
            "done": ("succeeded", 1),
        },
    ),
    "empty_input": ("succeeded", {"look": ("succeeded", 1), "look_again": ("succeeded", 1)}),
    "folder_code": ("succeeded", {"greet": ("succeeded", 1)}),
    "late_failure": (
        "failed",
        {
            "fine": ("succeeded", 1),
            "also_fine": ("succeeded", 1),
            "breaks": ("failed", 1),
            "after_break": ("upstream_failed", 0),
        },
    ),
    "not_json": ("failed", {"returns_a_set": ("failed", 2)}),
    "wide_fan_out": (
        "succeeded",
        {
            "start": ("succeeded", 1),
            **{f"leaf_{i:02d}": ("succeeded", 1) for i in range(1, 31)},
            "join": ("succeeded", 1),
        },
    ),
}


def assert_each_attempt_ran_once(result: CliResult) -> None:
    for name, job in result.report["jobs"].items():
        assert job["executions"] == job["attempts"], f"{name}: {job}"


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_fault_free_run_ends_as_the_spec_says(run: Any, case: str) -> None:
    spec, run_input = CASES[case]

    result = run(spec, run_input=run_input)

    status, jobs = EXPECTED[case]
    assert result.report["status"] == status
    assert result.exit_code == (0 if status == "succeeded" else 1)
    assert result.jobs() == jobs
    assert_each_attempt_ran_once(result)
    assert result.report["workflow"] == case
    assert result.report["faults"] == {"duplicated": 0, "reordered": 0, "crashes": 0, "redeliveries": 0}


def test_outputs_flow_to_the_jobs_after_them(run: Any) -> None:
    result = run(SPECS / "outputs.yaml", run_input={"base": 10})

    outputs = {name: job["output"] for name, job in result.report["jobs"].items()}
    assert outputs == {"one": {"n": 11}, "two": {"n": 12}, "three": {"n": 11}, "four": {"n": 12}}


def test_a_join_sees_the_output_of_every_job_it_waits_for(run: Any) -> None:
    result = run(SPECS / "wide_fan_out.yaml")

    assert result.report["jobs"]["join"]["output"] == {"results": [f"leaf_{i:02d}" for i in range(1, 31)]}


def test_conditions_read_the_outputs_of_earlier_jobs(run: Any) -> None:
    healthy = run(SPECS / "when_results.yaml", run_input={"broken": False, "size": 3})

    assert healthy.jobs() == {
        "inspect": ("succeeded", 1),
        "repair": ("skipped", 0),
        "celebrate": ("succeeded", 1),
        "big_only": ("skipped", 0),
    }


def test_the_flaky_job_succeeds_on_the_attempt_its_code_allows(run: Any) -> None:
    result = run(SPECS / "flaky_retry.yaml")

    assert result.report["jobs"]["flaky"]["output"] == {"succeeded_on": 3}
    assert result.report["jobs"]["after_flaky"]["output"] == {"results": ["flaky"]}


def test_a_run_without_input_gives_every_job_an_empty_object(run: Any) -> None:
    result = run(SPECS / "empty_input.yaml")

    assert result.report["jobs"]["look"]["output"] == {"input": {}, "keys": 0}


def test_code_in_a_folder_imports_the_modules_beside_it(run: Any) -> None:
    result = run(SPECS / "folder_code.yaml", run_input={"name": "fish"})

    assert result.report["jobs"]["greet"]["output"] == {"greeting": "hello, fish"}


def test_next_runs_phases_in_the_order_it_names(run: Any, mongo_client: pymongo.MongoClient[dict]) -> None:
    result = run(SPECS / "next_order.yaml", "--faults", "reorder,duplicate=2")

    database = mongo_client.list_database_names()
    statuses = next(
        list(mongo_client[name]["statuses"].find({"runId": result.report["run_id"]}).sort("date", 1))
        for name in database
        if name.startswith("runner_")
        and mongo_client[name]["statuses"].find_one({"runId": result.report["run_id"]})
    )
    started = [s["phase"] for s in statuses if s["status"] == "started"]
    completed = [s["phase"] for s in statuses if s["status"] == "phase_completed"]
    assert started == ["a", "c", "b", "d"]
    assert completed == ["a", "c", "b", "d"]


def test_progress_goes_to_stderr_and_the_summary_table_to_stdout(mongo_uri: str, database: str) -> None:
    result = cli("run", str(CATCH_THE_FISH), "--mongo-uri", mongo_uri, "--database", database)

    assert result.exit_code == 0
    assert "phase thinking" in result.stderr
    assert "phase cooking" in result.stderr
    assert (
        result.stderr.index("phase thinking")
        < result.stderr.index("go_home")
        < result.stderr.index("phase cooking")
    )
    assert "✔ buy_fishing_gear" in result.stderr
    assert "catch_the_fish: run succeeded" in result.stderr  # the notifier's message
    assert "workflow succeeded" in result.stderr
    assert "catch_the_fish run catch_the_fish-" in result.stdout
    assert ": succeeded" in result.stdout
    assert "cook" in result.stdout


def test_failures_are_shown_with_their_error_and_notified(mongo_uri: str, database: str) -> None:
    result = cli(
        "run", str(SPECS / "retries_exhausted.yaml"), "--mongo-uri", mongo_uri, "--database", database
    )

    assert result.exit_code == 1
    assert "✘ doomed" in result.stderr
    assert "attempt 2" in result.stderr
    assert "retries_exhausted: job doomed failed" in result.stderr
    assert "retries_exhausted: run failed" in result.stderr
    assert "job 'doomed' failed after 2 attempt(s): RuntimeError: doomed broke on attempt 2" in result.stdout
    assert "skipped" not in result.stderr


def test_a_job_that_succeeded_on_a_retry_shows_its_output_not_its_old_errors(
    mongo_uri: str, database: str
) -> None:
    store = ["--mongo-uri", mongo_uri, "--database", database]
    table = cli("run", str(SPECS / "flaky_retry.yaml"), *store)
    as_json = cli("status", table.stdout.split()[2].rstrip(":"), *store, "--json")

    flaky = next(line for line in table.stdout.splitlines() if line.strip().startswith("flaky "))
    assert '{"succeeded_on": 3}' in flaky
    assert "flaky failure" not in table.stdout  # the errors of attempts 1 and 2 are history
    assert as_json.report["jobs"]["flaky"]["error"] is None
    assert as_json.report["error"] is None


def test_json_says_why_the_run_failed_and_which_job_failed_how(mongo_uri: str, database: str) -> None:
    store = ["--mongo-uri", mongo_uri, "--database", database]
    ran = cli("run", str(SPECS / "retries_exhausted.yaml"), "--json", *store)
    shown = cli("status", ran.report["run_id"], *store, "--json")

    for result in (ran, shown):
        assert result.report["error"].startswith(
            "job 'doomed' failed after 2 attempt(s): RuntimeError: doomed broke on attempt 2"
        )
        jobs = result.report["jobs"]
        assert "RuntimeError: doomed broke on attempt 2" in jobs["doomed"]["error"]
        assert {name: job["error"] for name, job in jobs.items() if name != "doomed"} == {
            "sibling": None,
            "after_doomed": None,
            "unreached": None,
        }


def test_skipped_jobs_are_listed_when_their_phase_ends(mongo_uri: str, database: str) -> None:
    result = cli("run", str(SPECS / "skipped_phase.yaml"), "--mongo-uri", mongo_uri, "--database", database)

    assert result.exit_code == 0
    optional = result.stderr[result.stderr.index("phase optional") : result.stderr.index("phase wrap_up")]
    assert "· maybe" in optional
    assert "· also_maybe" in optional
    assert "· after_maybe" in optional


# --- faults ------------------------------------------------------------------------------------------

FAULT_MIXES = ("duplicate=3", "reorder", "crash=0.3", "duplicate=2,reorder,crash=0.2")
SEEDS = (1, 2, 3, 4)


@pytest.mark.faults
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("faults", FAULT_MIXES)
@pytest.mark.parametrize("case", sorted(CASES))
def test_a_run_under_faults_ends_exactly_like_the_fault_free_run(
    run: Any, case: str, faults: str, seed: int
) -> None:
    spec, run_input = CASES[case]

    result = run(spec, "--faults", faults, "--seed", str(seed), run_input=run_input)

    status, jobs = EXPECTED[case]
    assert (result.report["status"], result.jobs()) == (status, jobs)
    assert_each_attempt_ran_once(result)
    counters = result.report["faults"]
    assert counters["redeliveries"] == counters["crashes"]
    if "duplicate" in faults:
        assert counters["duplicated"] > 0
    if "crash" not in faults:
        assert counters["crashes"] == 0
    if "reorder" not in faults:
        assert counters["reordered"] == 0


@pytest.mark.faults
def test_reordering_really_reorders(run: Any) -> None:
    result = run(SPECS / "wide_fan_out.yaml", "--faults", "reorder", "--seed", "7")

    assert result.report["faults"]["reordered"] > 0
    assert result.report["status"] == "succeeded"


@pytest.mark.faults
def test_crashes_are_injected_and_redelivered(run: Any) -> None:
    result = run(CATCH_THE_FISH, "--faults", "crash=0.5", "--seed", "3")

    assert result.report["faults"]["crashes"] > 0
    assert result.report["faults"]["redeliveries"] == result.report["faults"]["crashes"]
    assert result.jobs() == EXPECTED["catch_the_fish"][1]
    assert_each_attempt_ran_once(result)


@pytest.mark.faults
def test_a_seed_fixes_the_crashes(run: Any) -> None:
    first = run(SPECS / "fan_out.yaml", "--faults", "crash=0.4", "--seed", "11")
    second = run(SPECS / "fan_out.yaml", "--faults", "crash=0.4", "--seed", "11")

    assert first.report["faults"]["crashes"] == second.report["faults"]["crashes"] > 0


NOTICES = ("✉ retries_exhausted: job doomed failed", "✉ retries_exhausted: run failed")
"""What the notifier of retries_exhausted sends: a failure notice per attempt (``attempt_failed``),
then the run's end."""


@pytest.mark.faults
def test_duplicate_delivery_sends_each_notification_once(run: Any) -> None:
    result = run(SPECS / "retries_exhausted.yaml", "--faults", "duplicate=3")

    assert result.report["faults"]["duplicated"] > 0
    assert [result.stderr.count(notice) for notice in NOTICES] == [2, 1]


@pytest.mark.faults
@pytest.mark.parametrize("seed", SEEDS)
def test_crashing_notifiers_lose_no_notification(run: Any, seed: int) -> None:
    result = run(SPECS / "retries_exhausted.yaml", "--faults", "duplicate=2,crash=0.5", "--seed", str(seed))

    failed, ended = (result.stderr.count(notice) for notice in NOTICES)
    assert failed >= 2
    assert ended >= 1
    # Sent twice only by a handling that died after publishing, before marking its claim sent.
    assert failed + ended <= 3 + result.report["faults"]["crashes"]


# --- --json, --timeout, Ctrl-C -------------------------------------------------------------------------


def test_json_output_is_one_object_even_when_job_code_prints(run: Any) -> None:
    result = run(SPECS / "noisy.yaml")

    assert result.report["jobs"]["chatty"]["output"] == {"said": "hello", "request_id": True}
    assert "chatty job says hello on stdout" in result.stderr
    assert "and writes to sys.stdout directly" in result.stderr


def test_json_output_is_one_object_on_the_real_stdout_of_a_process(mongo_uri: str, database: str) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "cdk_app", "run", str(SPECS / "noisy.yaml"), "--json"]
        + ["--mongo-uri", mongo_uri, "--database", database],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout)["status"] == "succeeded"
    assert "chatty job says hello" in completed.stderr


def test_a_run_that_stops_making_progress_names_the_job_it_waits_for(run: Any, tmp_path: Path) -> None:
    release = tmp_path / "release"
    started = time.monotonic()
    try:
        result = run(SPECS / "blocking.yaml", "--timeout", "1", run_input={"release": str(release)})
    finally:
        release.touch()  # lets the blocked job thread end

    assert result.exit_code == 1
    assert time.monotonic() - started < 30
    assert "no new status for 1s; still waiting for stuck (attempt 1)" in result.stderr
    assert result.jobs() == {"quick": ("succeeded", 1), "stuck": ("pending", 1)}
    assert result.report["status"] == "failed"


def test_an_attempt_past_its_timeout_is_reported_as_lambda_would_and_retried(
    run: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "250")  # progress lines are cut to the terminal's width
    release = tmp_path / "release"
    try:
        result = run(SPECS / "times_out.yaml", "--timeout", "20", run_input={"release": str(release)})
    finally:
        release.touch()  # lets the first attempt's thread end

    assert result.exit_code == 0, result.stderr
    assert result.jobs() == {"slow_start": ("succeeded", 2)}
    assert result.report["jobs"]["slow_start"]["output"] == {"attempt": 2}
    assert result.report["jobs"]["slow_start"]["executions"] == 2
    failure = next(line for line in result.stderr.splitlines() if "failed" in line and "slow_start" in line)
    assert "attempt 1" in failure
    assert "Lambda gave up" in failure


# --- start and status ---------------------------------------------------------------------------------


def test_start_prints_the_run_id_and_status_shows_the_run_waiting(mongo_uri: str, database: str) -> None:
    store = ["--mongo-uri", mongo_uri, "--database", database]
    started = cli("start", str(CATCH_THE_FISH), *store, "--run-id", "fish-1", "--input", '{"mode": "fast"}')
    again = cli("start", str(CATCH_THE_FISH), *store, "--run-id", "fish-1", "--input", '{"mode": "fast"}')
    table = cli("status", "fish-1", *store)
    as_json = cli("status", "fish-1", *store, "--json")

    assert (started.exit_code, started.stdout) == (0, "fish-1\n")
    assert (again.exit_code, again.stdout) == (0, "fish-1\n")
    assert "existed already with the same input" in again.stderr
    assert table.exit_code == 0
    assert "catch_the_fish run fish-1: running" in table.stdout
    assert "current phase: thinking" in table.stdout
    assert as_json.report["status"] == "running"
    assert set(as_json.jobs().values()) == {("pending", 0)}
    assert "faults" not in as_json.report


def test_start_refuses_a_taken_run_id_with_another_input(mongo_uri: str, database: str) -> None:
    store = ["--mongo-uri", mongo_uri, "--database", database]
    cli("start", str(CATCH_THE_FISH), *store, "--run-id", "fish-2")

    result = cli("start", str(CATCH_THE_FISH), *store, "--run-id", "fish-2", "--input", '{"mode": "slow"}')

    assert result.exit_code == 1
    assert "run 'fish-2' already exists with a different input" in result.stderr
    assert result.stdout == ""


def test_status_of_a_finished_run_matches_what_run_reported(mongo_uri: str, database: str) -> None:
    store = ["--mongo-uri", mongo_uri, "--database", database]
    ran = cli("run", str(SPECS / "flaky_retry.yaml"), "--json", *store)

    shown = cli("status", ran.report["run_id"], *store, "--json")
    table = cli("status", ran.report["run_id"], *store)

    assert shown.exit_code == 0
    assert shown.jobs() == ran.jobs()
    assert shown.report["status"] == "succeeded"
    assert {job["executions"] for job in shown.report["jobs"].values()} == {None}
    assert "flaky_retry run" in table.stdout
    assert "succeeded" in table.stdout


def test_status_of_an_unknown_run_exits_1(mongo_uri: str, database: str) -> None:
    result = cli("status", "no-such-run", "--mongo-uri", mongo_uri, "--database", database)

    assert result.exit_code == 1
    assert f"unknown run 'no-such-run' in database '{database}'" in result.stderr


# --- bad input -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "exit_code", "message"),
    [
        (["--input", "{not json"], 2, "--input is not valid JSON"),
        (["--input", "[1, 2]"], 2, "--input must be a JSON object, got list"),
        (["--faults", "explode"], 2, "unknown fault 'explode'; expected duplicate=N, reorder or crash=P"),
        (["--faults", "crash=1.5"], 2, "crash=1.5: a probability from 0 up to (not including) 1"),
        (["--faults", "duplicate=0"], 2, "duplicate=0: deliver every event at least once"),
        (["--timeout", "0"], 2, "--timeout must be positive"),
        (["--timeout", "nan"], 2, "--timeout must be positive, got nan"),
        (
            ["--database", "a.b"],
            2,
            "invalid --database 'a.b': database names cannot contain the character '.'",
        ),
        (["--mongo-uri", "postgres://localhost"], 2, "invalid --mongo-uri 'postgres://localhost'"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_bad_run_options_give_one_line_and_a_usage_exit(
    mongo_uri: str, database: str, argv: list[str], exit_code: int, message: str
) -> None:
    store = [] if "--mongo-uri" in argv else ["--mongo-uri", mongo_uri]
    result = cli("run", str(CATCH_THE_FISH), *store, "--database", database, *argv)

    assert result.exit_code == exit_code
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""


def test_an_unreachable_mongodb_is_one_line_and_exit_1() -> None:
    started = time.monotonic()
    result = cli("status", "any", "--mongo-uri", "mongodb://user:secret@127.0.0.1:9/?directConnection=true")

    assert result.exit_code == 1
    assert "cannot reach MongoDB at mongodb://***@127.0.0.1:9/" in result.stderr
    assert "secret" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert time.monotonic() - started < 15


def test_an_invalid_spec_lists_its_problems_and_exits_1(mongo_uri: str, database: str) -> None:
    result = cli("run", str(REPO / "tests/specs/invalid/cycle.yaml"), "--json", "--mongo-uri", mongo_uri)

    assert result.exit_code == 1
    assert "cycle.yaml: $.phases" in result.stderr
    assert "1 problem found" in result.stderr or "problems found" in result.stderr
    assert result.stdout == ""


def test_a_missing_spec_is_a_usage_error(mongo_uri: str) -> None:
    result = cli("start", "no/such/spec.yaml", "--mongo-uri", mongo_uri)

    assert result.exit_code == 2
    assert "no such file: no/such/spec.yaml" in result.stderr


def test_job_code_that_cannot_be_imported_stops_the_run_before_it_starts(
    tmp_path: Path, mongo_uri: str, database: str, mongo_client: pymongo.MongoClient[dict]
) -> None:
    # It defines a handler (the loader checks that much without importing); importing it fails.
    (tmp_path / "broken.py").write_text(
        "raise ImportError('missing dependency: fishnet')\n\n\ndef handler(event, context):\n    return {}\n"
    )
    (tmp_path / "spec.yaml").write_text(
        "workflow: broken\nphases:\n  p:\n    jobs:\n      j: {code: broken.py}\n"
    )

    result = cli("run", str(tmp_path / "spec.yaml"), "--mongo-uri", mongo_uri, "--database", database)

    assert result.exit_code == 1
    assert "importing job 'j' failed: ImportError: missing dependency: fishnet" in result.stderr
    assert mongo_client[database]["state-machines"].count_documents({}) == 0


def test_a_job_whose_function_dies_reaches_the_orchestrator_through_its_on_failure_destination(
    run: Any,
) -> None:
    result = run(SPECS / "lambda_gives_up.yaml")

    assert result.exit_code == 1
    assert result.report["status"] == "failed"
    job = result.report["jobs"]["dies"]
    assert (job["status"], job["attempts"]) == ("failed", 2)
    # No Lambda retries of job functions (issue 16): each attempt's invocation ran once, Lambda
    # gave up on it at once and the orchestrator's retry was the next attempt.
    assert job["executions"] == job["attempts"]
    assert result.report["faults"]["redeliveries"] == 0
