"""Job code run locally as Lambda runs it: each job function's code in processes of its own, with
the job's ``env``, stopped at the job's timeout, and a handler that takes its process down (a
``BaseException`` that is not an ``Exception``) failing its attempt at once, as the function's
on-failure destination reports it (docs/cli.md, "How jobs run on this machine")."""

from __future__ import annotations

import json
import os
import shutil
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymongo
import pytest

from cdk_app.local.delivery import Bus, DaemonPool, FaultSettings
from cdk_app.local.faults import CrashPlan
from cdk_app.local.processes import python_difference
from runtime import contracts
from tests.cli_harness import CliResult, cli
from tests.test_dev_server import WAIT, dev_server

SPECS = Path(__file__).resolve().parent / "specs" / "runner"


@pytest.fixture
def run(mongo_uri: str, mongo_client: pymongo.MongoClient[dict]) -> Iterator[Any]:
    """``run SPEC --json`` in a database of its own, dropped afterwards."""
    databases: list[str] = []

    def run_spec(spec: Path, run_input: dict[str, Any], *options: str) -> CliResult:
        databases.append(f"processes_{uuid.uuid4().hex[:12]}")
        argv = ["run", str(spec), "--json", "--mongo-uri", mongo_uri, "--database", databases[-1]]
        return cli(*argv, "--input", json.dumps(run_input), "--timeout", "60", *options)

    yield run_spec
    for name in databases:
        mongo_client.drop_database(name)


@pytest.mark.parametrize("raised", ["KeyboardInterrupt", "GeneratorExit", "Halt"])
def test_a_job_raising_a_base_exception_fails_its_attempt_at_once_and_is_retried(
    run: Any, raised: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "250")  # progress lines are cut to the terminal's width
    started = time.monotonic()
    result = run(SPECS / "interrupted.yaml", {"raise": raised})
    elapsed = time.monotonic() - started

    assert result.exit_code == 0, result.stderr
    assert elapsed < 15, "the attempt failed at once, not at the job's timeout of 30 s"
    assert result.jobs() == {"interrupted": ("succeeded", 2)}
    assert result.report["jobs"]["interrupted"]["output"] == {"attempt": 2}
    assert result.report["jobs"]["interrupted"]["executions"] == 2
    failure = next(line for line in result.stderr.splitlines() if "failed" in line and "interrupted" in line)
    assert "attempt 1" in failure
    assert f"{raised}: stopped by the job" in failure
    assert "Exception in thread" not in result.stderr


def test_the_bus_gives_up_on_a_handling_that_raises_a_base_exception_and_its_thread_lives_on() -> None:
    """Job code run in the runner's own process (tests, benchmarks) goes through the same bus."""
    bus = Bus(FaultSettings(), {"job": DaemonPool("job", 1)})
    gave_up: list[BaseException] = []
    ran = threading.Event()

    def interrupted(plan: CrashPlan, request_id: str) -> None:
        raise KeyboardInterrupt("stopped by the job")

    bus.send("job", "job:a/1", interrupted, True, tries=1, on_give_up=lambda _, error: gave_up.append(error))
    bus.send("job", "job:b/1", lambda plan, request_id: ran.set(), True, tries=1)

    assert ran.wait(5), "the pool's one thread died with the first handling"
    assert [type(error) for error in gave_up] == [KeyboardInterrupt]
    deadline = time.monotonic() + 5
    while not bus.idle() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert bus.idle()
    bus.close()


def test_a_job_reads_its_env_and_two_parallel_jobs_each_see_their_own(run: Any, tmp_path: Path) -> None:
    result = run(SPECS / "job_env.yaml", {"folder": str(tmp_path)})

    assert result.exit_code == 0, result.stderr
    outputs = {name: job["output"] for name, job in result.report["jobs"].items()}
    assert outputs == {
        "red": {"colour": "red", "at_import": "red", "shared": "from-defaults", "together": True},
        "blue": {"colour": "blue", "at_import": "blue", "shared": "from-defaults", "together": True},
    }
    assert "COLOUR" not in os.environ, "a job's env stays in its own processes"
    assert "SHARED_SETTING" not in os.environ


def test_a_job_past_its_timeout_is_stopped_and_its_code_runs_no_further(run: Any, tmp_path: Path) -> None:
    written = tmp_path / "written"
    result = run(SPECS / "stopped_at_timeout.yaml", {"sleep": 3, "written": str(written)})
    time.sleep(4)  # past the moment the job would have written, had it not been stopped

    assert result.exit_code == 1, result.stderr
    assert result.jobs() == {"oversleeps": ("failed", 1)}
    assert not written.exists(), "the job's code ran on after its timeout"


def test_the_dev_server_runs_a_job_with_its_env(tmp_path: Path) -> None:
    workflows = tmp_path / "workflows"
    (workflows / "jobs").mkdir(parents=True)
    shutil.copy(SPECS / "job_env.yaml", workflows)
    shutil.copy(SPECS / "jobs" / "reads_env.py", workflows / "jobs")
    folder = tmp_path / "started"
    folder.mkdir()
    with dev_server(tmp_path, "--data", "data", "--workflows", str(workflows)) as dev:
        start = dev.cli(
            "start", str(workflows / "job_env.yaml"), "--input", json.dumps({"folder": str(folder)})
        )
        done = dev.cli("status", start.stdout.strip(), "--wait", WAIT, "--json")

    assert done.exit_code == 0, dev.stderr
    assert done.report["jobs"]["red"]["output"]["colour"] == "red"
    assert done.report["jobs"]["blue"]["output"]["colour"] == "blue"
    assert done.report["jobs"]["blue"]["output"]["shared"] == "from-defaults"
    difference = python_difference()  # the server runs on this Python, unpatched
    warnings = dev.stderr.count("warning: jobs run on this machine's Python")
    assert warnings == (0 if difference is None else 1)


def test_run_warns_once_when_this_python_is_not_the_functions_python(
    run: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(contracts, "LAMBDA_PYTHON_VERSION", "3.99")
    local = f"{sys.version_info.major}.{sys.version_info.minor}"

    result = run(SPECS / "job_env.yaml", {"folder": str(tmp_path)})

    assert result.exit_code == 0, result.stderr
    warning = f"warning: jobs run on this machine's Python {local}; their Lambda functions run Python 3.99\n"
    assert result.stderr.count(warning) == 1


def test_no_python_warning_when_the_versions_match(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        contracts, "LAMBDA_PYTHON_VERSION", f"{sys.version_info.major}.{sys.version_info.minor}"
    )

    assert python_difference() is None


def test_the_functions_python_is_the_runtime_the_constructs_deploy() -> None:
    from constructs.lambda_runtime import PYTHON_RUNTIME, python_version

    assert python_version(PYTHON_RUNTIME) == contracts.LAMBDA_PYTHON_VERSION
