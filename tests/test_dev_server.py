"""``python -m cdk_app dev`` as a new user meets it: the server runs as its own process on a temp
data folder, and the user's commands (``start``, ``status --wait``, ``cancel``, ``redrive``,
``runs``, ``history``) talk to it through the URI it prints. Job code counts its executions by
appending to a file, so "not run again" is checked on what ran, not on what was recorded."""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pymongo
import pytest

from tests.cli_harness import CliResult, cli

REPO = Path(__file__).resolve().parent.parent
DEV_SPECS = REPO / "tests" / "specs" / "dev"
STARTUP_SECONDS = 60.0
WAIT = "30"
"""Seconds a ``status --wait`` may take: far more than any of these runs needs."""

FIXED_BREAKS = """
from pathlib import Path


def handler(event, context):
    with Path(event["input"]["log"]).open("a", encoding="utf-8") as log:
        log.write(f"{event['job']}\\n")
    return {"fixed": True}
"""


@dataclass
class DevProcess:
    process: subprocess.Popen[str]
    uri: str
    stderr_file: Path

    @property
    def stderr(self) -> str:
        return self.stderr_file.read_text(encoding="utf-8")

    def cli(self, *argv: str) -> CliResult:
        """A command against this server, as a user with its URI would type it."""
        return cli(*argv, "--mongo-uri", self.uri)


def _children(pid: int) -> list[int]:
    listing = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True, check=False
    )
    return [int(line) for line in listing.stdout.split()]


@contextmanager
def dev_server(
    tmp_path: Path, *options: str, stop_with: signal.Signals = signal.SIGTERM
) -> Iterator[DevProcess]:
    """``dev`` in a process of its own; stopped (and checked to stop cleanly) when the block ends."""
    stderr_file = tmp_path / f"dev-{uuid.uuid4().hex[:6]}.err"
    with stderr_file.open("w", encoding="utf-8") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "cdk_app", "dev", *options],
            cwd=tmp_path,
            env={**{k: v for k, v in os.environ.items() if k != "MONGODB_URI"}, "PYTHONPATH": str(REPO)},
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], STARTUP_SECONDS)
        uri = process.stdout.readline().strip() if ready else ""
        assert uri.startswith("mongodb://"), stderr_file.read_text(encoding="utf-8")
        dev = DevProcess(process, uri, stderr_file)
        wait_until(lambda: "workflows in" in dev.stderr, "the dev server to load the specs")
        servers = _children(process.pid)
        yield dev
        process.send_signal(stop_with)
        # A loaded CI machine: the server's own stop is bounded well below this.
        assert process.wait(timeout=60) == 0, dev.stderr
        assert process.stdout.read() == "", "stdout holds the URI alone"
        for pid in servers:
            with pytest.raises(ProcessLookupError, match="No such process"):
                os.kill(pid, 0)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def wait_until(condition: Callable[[], bool], what: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


@pytest.fixture
def workflows(tmp_path: Path) -> Path:
    """The dev specs and their job code, in a folder the test may edit."""
    folder = tmp_path / "workflows"
    shutil.copytree(DEV_SPECS, folder)
    return folder


def executions(log: Path) -> list[str]:
    return log.read_text(encoding="utf-8").split() if log.exists() else []


def test_a_run_redriven_after_its_job_is_fixed_succeeds_without_rerunning_what_succeeded(
    tmp_path: Path, workflows: Path
) -> None:
    log = tmp_path / "executions.log"
    with dev_server(tmp_path, "--data", "data", "--workflows", str(workflows)) as dev:
        start = dev.cli("start", str(workflows / "fix_me.yaml"), "--input", json.dumps({"log": str(log)}))
        run_id = start.stdout.strip()
        failed = dev.cli("status", run_id, "--wait", WAIT, "--json")
        (workflows / "jobs" / "breaks.py").write_text(FIXED_BREAKS, encoding="utf-8")
        # The run keeps the code it started with; --upgrade moves it to the fixed code.
        redrive = dev.cli("redrive", run_id, "--upgrade", "--workflows", str(workflows))
        succeeded = dev.cli("status", run_id, "--wait", WAIT, "--json")
        history = dev.cli("history", run_id, "--json")

    assert start.exit_code == 0, start.stderr
    assert failed.exit_code == 1, dev.stderr
    assert failed.jobs() == {"prepare": ("succeeded", 1), "breaks": ("failed", 1), "finish": ("pending", 0)}
    assert (redrive.exit_code, redrive.stdout) == (0, f"upgrading redrive of run {run_id} requested\n")
    assert succeeded.exit_code == 0, dev.stderr
    assert succeeded.jobs() == {
        "prepare": ("succeeded", 1),
        "breaks": ("succeeded", 2),
        "finish": ("succeeded", 1),
    }
    assert succeeded.report["jobs"]["breaks"]["output"] == {"fixed": True}
    assert succeeded.report["jobs"]["prepare"]["output"] == {"job": "prepare", "attempt": 1}
    assert executions(log) == ["prepare", "breaks", "breaks", "finish"]
    statuses = [entry["status"] for entry in history.listing]
    assert (
        statuses.index("workflow_failed")
        < statuses.index("redrive_requested")
        < statuses.index("workflow_succeeded")
    )


def test_a_run_cancelled_mid_phase_ends_cancelled_and_nothing_is_dispatched_after(
    tmp_path: Path, workflows: Path
) -> None:
    log, release = tmp_path / "executions.log", tmp_path / "release"
    run_input = json.dumps({"log": str(log), "release": str(release)})
    with dev_server(tmp_path, "--data", "data", "--workflows", str(workflows)) as dev:
        run_id = dev.cli("start", str(workflows / "waits.yaml"), "--input", run_input).stdout.strip()
        wait_until(lambda: "blocked" in executions(log), "the blocking job to run")
        cancel = dev.cli("cancel", run_id, "--reason", "wrong input")
        cancelled = dev.cli("status", run_id, "--wait", WAIT, "--json")
        release.touch()  # the job that was running when the run was cancelled reports now
        wait_until(
            lambda: (
                ("success", "blocked")
                in {(e["status"], e["job"]) for e in dev.cli("history", run_id, "--json").listing}
            ),
            "the released job's report",
        )
        time.sleep(0.5)  # what a report would dispatch would be on its way by now
        after = dev.cli("status", run_id, "--json")
        history = dev.cli("history", run_id, "--json")

    assert (cancel.exit_code, cancel.stdout) == (0, f"cancel of run {run_id} requested\n")
    assert cancelled.exit_code == 1, dev.stderr
    assert cancelled.report["status"] == "cancelled"
    assert "wrong input" in cancelled.report["error"]
    assert after.report["status"] == "cancelled"
    assert after.jobs()["after_blocked"] == ("pending", 0)
    assert executions(log) == ["quick", "blocked"]
    jobs_reported = [(e["job"], e["status"]) for e in history.listing if e["job"] is not None]
    assert ("after_blocked", "started") not in jobs_reported
    cancel_requested = next(e for e in history.listing if e["status"] == "cancel_requested")
    assert cancel_requested["reason"] == "wrong input"


def test_a_run_started_while_no_server_delivers_completes_once_the_server_starts(
    tmp_path: Path, workflows: Path, mongo_uri: str, mongo_client: pymongo.MongoClient[dict]
) -> None:
    database = f"dev_{uuid.uuid4().hex[:12]}"
    log = tmp_path / "executions.log"
    store = ["--mongo-uri", mongo_uri, "--database", database]
    try:
        start = cli("start", str(workflows / "quick.yaml"), *store, "--input", json.dumps({"log": str(log)}))
        run_id = start.stdout.strip()
        waiting = cli("status", run_id, "--wait", "0.5", *store)
        with dev_server(tmp_path, *store, "--workflows", str(workflows)) as dev:
            done = cli("status", run_id, "--wait", WAIT, "--json", *store)
    finally:
        mongo_client.drop_database(database)

    assert waiting.exit_code == 3
    assert done.exit_code == 0, dev.stderr
    assert done.jobs() == {"a": ("succeeded", 1), "b": ("succeeded", 1), "c": ("succeeded", 1)}
    assert sorted(executions(log)) == ["a", "b", "c"]


def test_the_data_and_the_uri_outlive_a_restart_and_ctrl_c_stops_it_cleanly(
    tmp_path: Path, workflows: Path
) -> None:
    log = tmp_path / "executions.log"
    options = ("--data", "data", "--workflows", str(workflows))
    with dev_server(tmp_path, *options, stop_with=signal.SIGINT) as first:
        run_id = first.cli("start", str(workflows / "quick.yaml"), "--input", json.dumps({"log": str(log)}))
        ended = first.cli("status", run_id.stdout.strip(), "--wait", WAIT)
    with dev_server(tmp_path, *options) as second:
        listed = second.cli("runs", "--json")

    assert ended.exit_code == 0, first.stderr
    assert second.uri == first.uri
    assert [(run["run_id"], run["status"]) for run in listed.listing] == [
        (run_id.stdout.strip(), "succeeded")
    ]
    assert (tmp_path / "data").is_dir()


def test_progress_is_one_line_per_status_and_spec_edits_apply_to_new_runs(
    tmp_path: Path, workflows: Path
) -> None:
    log = tmp_path / "executions.log"
    spec = workflows / "quick.yaml"
    with dev_server(tmp_path, "--data", "data", "--workflows", str(workflows)) as dev:
        spec.write_text(
            spec.read_text(encoding="utf-8") + "      d: {code: jobs/count.py}\n", encoding="utf-8"
        )
        wait_until(lambda: "(reloaded)" in dev.stderr, "the dev server to reload the specs")
        run_id = dev.cli("start", str(spec), "--input", json.dumps({"log": str(log)})).stdout.strip()
        done = dev.cli("status", run_id, "--wait", WAIT, "--json")

    assert done.exit_code == 0, dev.stderr
    assert done.jobs()["d"] == ("succeeded", 1)
    assert sorted(executions(log)) == ["a", "b", "c", "d"]
    lines = [line for line in dev.stderr.splitlines() if f"quick/{run_id}" in line]
    assert len(lines) == 2 * 4 + 4  # started and success per job; the run's start, two phases, its end
    assert any(line.endswith(f"quick/{run_id} two/d success attempt 1") for line in lines)
    assert lines[-1].endswith(f"quick/{run_id} workflow_succeeded")


def test_a_run_whose_job_was_running_when_the_server_stopped_completes_after_a_restart(
    tmp_path: Path, workflows: Path
) -> None:
    log = tmp_path / "executions.log"
    options = ("--data", "data", "--workflows", str(workflows))
    with dev_server(tmp_path, *options) as first:
        run_id = first.cli("start", str(workflows / "hangs.yaml"), "--input", json.dumps({"log": str(log)}))
        wait_until(lambda: executions(log) == ["hangs_once"], "the first attempt to start")
    with dev_server(tmp_path, *options) as second:
        done = second.cli("status", run_id.stdout.strip(), "--wait", WAIT, "--json")

    assert done.exit_code == 0, second.stderr
    assert done.jobs() == {"hangs_once": ("succeeded", 2)}
    assert executions(log) == ["hangs_once", "hangs_once"]
    assert "hangs_once attempt 1 ran past its timeout of 2s: reported as Lambda would" in second.stderr
    assert "hangs_once attempt 1 ran past" not in first.stderr


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            ["--data", "d", "--mongo-uri", "mongodb://127.0.0.1:9"],
            "--mongo-uri and --data exclude each other",
        ),
        (["--workflows", "no/such/folder"], "no such folder: no/such/folder"),
    ],
    ids=["data-and-uri", "no-folder"],
)
def test_dev_refuses_bad_options_with_a_usage_exit(options: list[str], message: str) -> None:
    result = cli("dev", *options)

    assert result.exit_code == 2
    assert message in result.stderr


LIMITED = """
workflow: limited
concurrency: {limit: 1}
phases:
  only:
    jobs:
      blocked: {code: jobs/wait_for_release.py}
"""


def test_runs_over_the_concurrency_limit_queue_and_start_one_by_one(tmp_path: Path, workflows: Path) -> None:
    log, release = tmp_path / "executions.log", tmp_path / "release"
    (workflows / "limited.yaml").write_text(LIMITED, encoding="utf-8")
    run_input = json.dumps({"log": str(log), "release": str(release)})
    with dev_server(tmp_path, "--data", "data", "--workflows", str(workflows)) as dev:
        runs = [
            dev.cli("start", str(workflows / "limited.yaml"), "--input", run_input).stdout.strip()
            for _ in range(3)
        ]
        wait_until(lambda: executions(log) == ["blocked"], "the first run's job to run")
        queued = dev.cli("runs", "--status", "queued", "--json")
        release.touch()
        ended = [dev.cli("status", run_id, "--wait", WAIT, "--json") for run_id in runs]

    assert sorted(run["run_id"] for run in queued.listing) == sorted(runs[1:])
    assert [result.report["status"] for result in ended] == ["succeeded"] * 3, dev.stderr
    assert executions(log) == ["blocked"] * 3
