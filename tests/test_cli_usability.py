"""What a new user meets at the CLI: an approval answered with the command ``run`` prints, output
to a file or a pipe kept whole, a misspelled workflow named as such, ``run`` ending with its run,
a redriven run's table saying what ran, and start-up that does not import the world."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pymongo
import pytest

from tests.cli_harness import cli
from tests.test_dev_server import WAIT, dev_server, wait_until

REPO = Path(__file__).resolve().parent.parent
SPECS = REPO / "tests" / "specs" / "cli"
TIME_SPECS = REPO / "tests" / "specs" / "time"
LONG_ERROR_END = "(attempt 1) THE END"
LONG_JOB = "a_job_named_longer_than_its_progress_column"


@pytest.fixture
def store(mongo_uri: str, mongo_client: pymongo.MongoClient[dict]) -> Iterator[tuple[str, ...]]:
    """``--mongo-uri`` and ``--database`` of a database of its own, dropped afterwards."""
    database = f"cli_{uuid.uuid4().hex[:12]}"
    yield ("--mongo-uri", mongo_uri, "--database", database)
    mongo_client.drop_database(database)


def _user_environment() -> dict[str, str]:
    """A shell as the user has it: no MONGODB_URI, the project's Python first on PATH."""
    environment = {name: value for name, value in os.environ.items() if name != "MONGODB_URI"}
    environment["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environment.get('PATH', '')}"
    return environment


# --- an approval during a local run -----------------------------------------------------------------


def test_the_approve_command_run_prints_answers_the_approval_when_pasted_as_printed(
    tmp_path: Path,
) -> None:
    stderr_file = tmp_path / "run.err"
    environment = _user_environment()
    with stderr_file.open("w", encoding="utf-8") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "cdk_app", "run", str(TIME_SPECS / "approval.yaml")],
            cwd=REPO,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    try:
        wait_until(
            lambda: "python -m cdk_app approve" in stderr_file.read_text(encoding="utf-8"),
            "the run to print how to approve",
            seconds=60,
        )
        printed = stderr_file.read_text(encoding="utf-8")
        [command] = [
            line.strip()
            for line in printed.splitlines()
            if line.strip().startswith("python -m cdk_app approve")
        ]
        # Pasted into another shell, as printed.
        answer = subprocess.run(
            command, shell=True, cwd=REPO, env=environment, capture_output=True, text=True, timeout=60
        )
        stdout, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert answer.returncode == 0, answer.stderr
    assert "approval of sign_off in run" in answer.stdout
    assert "--mongo-uri" in shlex.split(command)
    uri = shlex.split(command)[shlex.split(command).index("--mongo-uri") + 1]
    assert f"embedded MongoDB server on {uri}" in printed
    assert process.returncode == 0, stderr_file.read_text(encoding="utf-8")
    assert "approval run" in stdout
    assert ": succeeded" in stdout


# --- make run INPUT= ---------------------------------------------------------------------------------------


def test_make_run_passes_its_input_to_the_run(store: tuple[str, ...]) -> None:
    run_input = {"it": "works", "quote": "it's"}
    printed = subprocess.run(
        [
            "make",
            "-n",
            "-s",
            "run",
            "SPEC=tests/specs/runner/empty_input.yaml",
            f"INPUT={json.dumps(run_input)}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    [command] = [line for line in printed.stdout.splitlines() if "-m cdk_app run" in line]
    ran = subprocess.run(
        ["bash", "-c", f"{command} --json {shlex.join(store)}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )

    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["jobs"]["look"]["output"]["input"] == run_input


# --- output to a file or a pipe is never cut ---------------------------------------------------------


def test_run_to_a_pipe_keeps_long_job_names_and_errors_whole(store: tuple[str, ...]) -> None:
    result = cli("run", str(SPECS / "long_error.yaml"), *store)

    assert result.exit_code == 1
    progress = [line for line in result.stderr.splitlines() if "failed" in line and LONG_JOB in line]
    assert progress, result.stderr
    assert progress[0].rstrip().endswith(LONG_ERROR_END)
    assert "…" not in progress[0]
    summary = [line for line in result.stdout.splitlines() if LONG_JOB in line]
    assert summary, result.stdout
    assert summary[0].rstrip().endswith(LONG_ERROR_END)
    assert " … " not in summary[0]


def test_the_dev_server_log_in_a_file_keeps_attempt_numbers_and_errors_whole(tmp_path: Path) -> None:
    workflows = tmp_path / "workflows"
    (workflows / "jobs").mkdir(parents=True)
    for name in ("long_error.yaml", "jobs/long_error.py"):
        (workflows / name).write_text((SPECS / name).read_text(encoding="utf-8"), encoding="utf-8")
    with dev_server(tmp_path, "--data", "data", "--workflows", str(workflows)) as dev:
        run_id = dev.cli("start", str(workflows / "long_error.yaml")).stdout.strip()
        done = dev.cli("status", run_id, "--wait", WAIT, "--json")

    assert done.exit_code == 1, dev.stderr
    [failed] = [line for line in dev.stderr.splitlines() if f"{LONG_JOB} failed attempt" in line]
    assert f"{LONG_JOB} failed attempt 1 ValueError: the ledger does not balance" in failed
    assert failed.rstrip().endswith(LONG_ERROR_END)


def test_history_and_runs_to_a_pipe_keep_errors_whole(store: tuple[str, ...]) -> None:
    ran = cli("run", str(SPECS / "long_error.yaml"), "--json", *store)
    run_id = ran.report["run_id"]

    history = cli("history", run_id, *store)
    runs = cli("runs", *store)

    assert history.exit_code == runs.exit_code == 0
    [failed] = [line for line in history.stdout.splitlines() if line.split()[2:4] == [LONG_JOB, "failed"]]
    assert failed.rstrip().endswith(LONG_ERROR_END)
    [run_failed] = [line for line in history.stdout.splitlines() if "workflow_failed" in line]
    assert run_failed.rstrip().endswith(LONG_ERROR_END)
    [listed] = [line for line in runs.stdout.splitlines() if run_id in line]
    assert listed.rstrip().endswith(LONG_ERROR_END)


# --- runs --workflow with a misspelled name ------------------------------------------------------------


def test_runs_of_an_unknown_workflow_is_an_error_that_suggests_the_known_one(store: tuple[str, ...]) -> None:
    cli("run", str(SPECS / "long_error.yaml"), "--json", *store)

    misspelled = cli("runs", "--workflow", "long_eror", *store)
    from_the_folder = cli("runs", "--workflow", "catch_the_fsh", *store)
    known = cli("runs", "--workflow", "catch_the_fish", *store)

    assert misspelled.exit_code == 2
    assert "unknown workflow 'long_eror'" in misspelled.stderr
    assert "did you mean 'long_error'?" in misspelled.stderr
    assert from_the_folder.exit_code == 2
    assert "did you mean 'catch_the_fish'?" in from_the_folder.stderr
    assert (known.exit_code, known.stdout) == (0, "no runs\n")


# --- history speaks of attempts --------------------------------------------------------------------------


def test_history_calls_a_redriven_runs_round_an_attempt_as_the_dev_log_does(
    store: tuple[str, ...], tmp_path: Path
) -> None:
    spec = str(SPECS / "handler_then_redrive.yaml")
    ran = cli("run", spec, "--json", "--input", json.dumps({"fixed": str(tmp_path / "no")}), *store)
    run_id = ran.report["run_id"]
    cli("redrive", run_id, *store)

    history = cli("history", run_id, *store)

    assert history.exit_code == 0
    assert "round" not in history.stdout
    [requested] = [line for line in history.stdout.splitlines() if "redrive_requested" in line]
    assert "attempt 1" in requested


# --- a redriven run's failure handlers ---------------------------------------------------------------------


def test_after_a_redrive_a_handler_that_ran_before_shows_what_it_did_and_no_time_of_this_round(
    tmp_path: Path,
) -> None:
    workflows = tmp_path / "workflows"
    (workflows / "jobs").mkdir(parents=True)
    for name in ("handler_then_redrive.yaml", "jobs/fails_until_fixed.py"):
        (workflows / name).write_text((SPECS / name).read_text(encoding="utf-8"), encoding="utf-8")
    fixed = tmp_path / "fixed"
    with dev_server(tmp_path, "--data", "data", "--workflows", str(workflows)) as dev:
        spec = str(workflows / "handler_then_redrive.yaml")
        run_id = dev.cli("start", spec, "--input", json.dumps({"fixed": str(fixed)})).stdout.strip()
        failed = dev.cli("status", run_id, "--wait", WAIT, "--json")
        fixed.touch()
        dev.cli("redrive", run_id)
        wait_until(lambda: dev.cli("status", run_id, "--json").report["status"] == "succeeded", "the redrive")
        table = dev.cli("status", run_id)
        as_json = dev.cli("status", run_id, "--json")

    assert failed.jobs()["tidy_up"] == ("succeeded", 1), dev.stderr
    assert table.exit_code == 0
    [line] = [line for line in table.stdout.splitlines() if "tidy_up" in line]
    assert line.split()[:2] == ["tidy_up", "pending"]
    assert re.search(r"\d+ ms|\d+\.\d+ s", line) is None, line
    assert line.rstrip().endswith("ran before the redrive: succeeded (attempt 1)")
    assert as_json.jobs()["tidy_up"] == ("pending", 1)


# --- run returns when its run has ended ---------------------------------------------------------------------


def test_run_returns_soon_after_a_deadline_ends_the_run_without_waiting_for_the_job(
    store: tuple[str, ...],
) -> None:
    began = time.monotonic()
    result = cli("run", str(SPECS / "sleeps_past_deadline.yaml"), "--json", *store)
    took = time.monotonic() - began

    assert result.exit_code == 1
    assert result.report["error"] == "run deadline exceeded"
    assert result.jobs()["sleeper"] == ("cancelled", 1)
    assert took < 8, f"run took {took:.1f} s: it waited for the job's 10 s sleep"


# --- start-up --------------------------------------------------------------------------------------------

HEAVY_MODULES = (
    "aws_cdk",
    "boto3",
    "botocore",
    "pymongo",
    "jsonschema",
    "rich",
    "moto",
    "uvicorn",
    "starlette",
)


def test_help_imports_none_of_the_heavy_modules() -> None:
    probe = (
        "import sys, contextlib, io\n"
        "from cdk_app.cli.main import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    main(['--help'])\n"
        "for command in ('run', 'status', 'runs', 'history', 'dev', 'console', 'prune', 'validate'):\n"
        "    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "        main([command, '--help'])\n"
        "print(json.dumps(sorted({name.split('.')[0] for name in sys.modules})))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", "import json\n" + probe],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )

    imported = set(json.loads(loaded.stdout))
    assert imported.isdisjoint(HEAVY_MODULES), sorted(imported & set(HEAVY_MODULES))
