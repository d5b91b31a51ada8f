"""Versions on this machine (docs/operating.md, "Versions and deploys"): the dev server pins each
run to a content-addressed snapshot of the job code, so a job edited while a run is in flight
changes the next runs only; the run's retries and a redrive keep running the code it started
with, ``redrive --upgrade`` moves it to the code the folder holds now, and a run whose job was
removed from the spec still completes. The job code logs ``<version>:<run tag>:<attempt>``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cdk_app.local.jobs import context_for
from cdk_app.local.processes import JobProcesses
from cdk_app.local.snapshots import CodeSnapshots
from runtime.definition.loader import load_workflow
from tests.test_dev_server import WAIT, dev_server, executions, wait_until

SPEC = """\
workflow: versioned
defaults: {retries: 1}
phases:
  main:
    jobs:
      gate: {code: jobs/gate.py}
      change: {after: [gate], code: jobs/change}
"""

GATE = """\
import time
from pathlib import Path


def handler(event, context):
    release = Path(event["input"]["release"])
    deadline = time.monotonic() + 30
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return {"released": release.exists()}
"""

CHANGE = """\
from pathlib import Path

from version import VERSION


def handler(event, context):
    tag = event["input"]["tag"]
    with Path(event["input"]["log"]).open("a", encoding="utf-8") as log:
        log.write(f"{VERSION}:{tag}:{event['attempt']}\\n")
    if VERSION == "v1" and event["input"].get("fail"):
        raise RuntimeError("version 1 cannot do this")
    return {"version": VERSION}
"""
"""``change`` is a folder job: its version is in a module beside the handler, so a snapshot must
keep the module of its own version too."""


GATE_AFTER_A_NEW_JOB = """\
workflow: versioned
defaults: {retries: 1}
phases:
  main:
    jobs:
      new_first: {code: jobs/gate.py}
      gate: {after: [new_first], code: jobs/gate.py}
      change: {after: [gate], code: jobs/change}
"""


def write_version(workflows: Path, version: str) -> None:
    (workflows / "jobs" / "change" / "version.py").write_text(f"VERSION = {version!r}\n", encoding="utf-8")


@pytest.fixture
def workflows(tmp_path: Path) -> Path:
    folder = tmp_path / "workflows"
    (folder / "jobs" / "change").mkdir(parents=True)
    (folder / "versioned.yaml").write_text(SPEC, encoding="utf-8")
    (folder / "jobs" / "gate.py").write_text(GATE, encoding="utf-8")
    (folder / "jobs" / "change" / "handler.py").write_text(CHANGE, encoding="utf-8")
    write_version(folder, "v1")
    return folder


def run_input(tmp_path: Path, tag: str, **extra: object) -> str:
    return json.dumps(
        {"tag": tag, "log": str(tmp_path / "log"), "release": str(tmp_path / f"release-{tag}"), **extra}
    )


def test_a_job_edited_while_a_run_is_in_flight_changes_the_next_runs_only(
    tmp_path: Path, workflows: Path
) -> None:
    spec = str(workflows / "versioned.yaml")
    log = tmp_path / "log"
    with dev_server(tmp_path, "--data", "data", "--workflows", str(workflows)) as dev:
        first = dev.cli("start", spec, "--input", run_input(tmp_path, "A", fail=True)).stdout.strip()
        # Its gate's `started`, not its dispatch: the run is pinned when the dispatched job's
        # function is looked up, a moment after the decision that shows the job running.
        wait_until(lambda: _started(dev, first, "gate"), "the first run's gate to start")
        write_version(workflows, "v2")
        wait_until(lambda: "(reloaded)" in dev.stderr, "the dev server to reload the folder")
        second = dev.cli("start", spec, "--input", run_input(tmp_path, "B", fail=True)).stdout.strip()
        (tmp_path / "release-A").touch()
        (tmp_path / "release-B").touch()
        failed = dev.cli("status", first, "--wait", WAIT, "--json")
        succeeded = dev.cli("status", second, "--wait", WAIT, "--json")
        redrive = dev.cli("redrive", first)
        failed_again = dev.cli("status", first, "--wait", WAIT, "--json")
        upgrade = dev.cli("redrive", first, "--upgrade", "--workflows", str(workflows))
        upgraded = dev.cli("status", first, "--wait", WAIT, "--json")

    assert failed.exit_code == 1, dev.stderr
    assert failed.jobs()["change"] == ("failed", 2)
    assert succeeded.exit_code == 0, dev.stderr
    assert redrive.exit_code == 0, redrive.stderr
    assert failed_again.exit_code == 1, dev.stderr
    assert failed_again.jobs()["change"] == ("failed", 4)
    assert (upgrade.exit_code, upgrade.stdout) == (0, f"upgrading redrive of run {first} requested\n")
    assert upgraded.exit_code == 0, dev.stderr
    assert upgraded.jobs() == {"gate": ("succeeded", 1), "change": ("succeeded", 5)}
    # A's retry and the redrive's two attempts (a fresh retry budget) ran version 1 again; the
    # upgrade ran version 2, as the run started after the edit did.
    assert sorted(executions(log)) == ["v1:A:1", "v1:A:2", "v1:A:3", "v1:A:4", "v2:A:5", "v2:B:1"]


def test_a_run_whose_job_was_removed_from_the_spec_still_completes_and_cannot_upgrade(
    tmp_path: Path, workflows: Path
) -> None:
    spec = workflows / "versioned.yaml"
    log = tmp_path / "log"
    with dev_server(tmp_path, "--data", "data", "--workflows", str(workflows)) as dev:
        run_id = dev.cli("start", str(spec), "--input", run_input(tmp_path, "C")).stdout.strip()
        wait_until(lambda: _started(dev, run_id, "gate"), "the gate to start")
        spec.write_text(
            SPEC.replace("      change: {after: [gate], code: jobs/change}\n", ""), encoding="utf-8"
        )
        wait_until(lambda: "(reloaded)" in dev.stderr, "the dev server to reload the folder")
        (tmp_path / "release-C").touch()
        done = dev.cli("status", run_id, "--wait", WAIT, "--json")

    assert done.exit_code == 0, dev.stderr
    assert done.jobs() == {"gate": ("succeeded", 1), "change": ("succeeded", 1)}
    assert executions(log) == ["v1:C:1"]


def test_an_upgrade_the_run_cannot_take_exits_1_with_the_reason(tmp_path: Path, workflows: Path) -> None:
    spec = workflows / "versioned.yaml"
    with dev_server(tmp_path, "--data", "data", "--workflows", str(workflows)) as dev:
        (tmp_path / "release-D").touch()
        run_id = dev.cli("start", str(spec), "--input", run_input(tmp_path, "D", fail=True)).stdout.strip()
        failed = dev.cli("status", run_id, "--wait", WAIT, "--json")
        spec.write_text(GATE_AFTER_A_NEW_JOB, encoding="utf-8")
        refused = dev.cli("redrive", run_id, "--upgrade", "--workflows", str(workflows))

    assert failed.exit_code == 1, dev.stderr
    assert refused.exit_code == 1
    assert refused.stderr.strip().endswith(
        f"run {run_id} cannot move to the current definition: job 'gate' succeeded after [], and now "
        "runs after [new_first]"
    ), refused.stderr


def test_a_snapshot_is_written_once_per_content_and_keeps_its_own_code(
    tmp_path: Path, workflows: Path
) -> None:
    snapshots = CodeSnapshots(tmp_path / "code")
    spec = workflows / "versioned.yaml"

    first = snapshots.snapshot(load_workflow(spec))
    again = snapshots.snapshot(load_workflow(spec))
    write_version(workflows, "v2")
    second = snapshots.snapshot(load_workflow(spec))

    assert first == again
    assert first.functions["change"] != second.functions["change"]
    assert first.deploy_id != second.deploy_id
    assert len(list((tmp_path / "code").iterdir())) == 2
    old = snapshots.job(first.functions["change"], "change")
    assert old is not None
    assert (Path(str(old.code)) / "version.py").read_text(encoding="utf-8") == "VERSION = 'v1'\n"
    assert snapshots.job(first.functions["change"].rpartition(":")[0] + ":nosuchsnapshot", "change") is None


def test_each_snapshot_of_a_folder_job_imports_the_modules_beside_its_own_handler(
    tmp_path: Path, workflows: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # a relative root: Python records the modules' files absolute
    snapshots = CodeSnapshots(Path("code"))
    spec = workflows / "versioned.yaml"
    first = snapshots.snapshot(load_workflow(spec))
    write_version(workflows, "v2")
    second = snapshots.snapshot(load_workflow(spec))
    event = {"input": {"tag": "T", "log": str(tmp_path / "log")}, "attempt": 1}

    outputs = []
    with JobProcesses() as processes:
        for deployment in (first, second, first):
            job = snapshots.job(deployment.functions["change"], "change")
            assert job is not None
            handler = processes.handler("versioned", job, None)
            outputs.append(handler(event, context_for("versioned", job, "request")))

    assert outputs == [{"version": "v1"}, {"version": "v2"}, {"version": "v1"}]


def _started(dev: Any, run_id: str, job: str) -> bool:
    history = dev.cli("history", run_id, "--json")
    return history.exit_code == 0 and any(
        entry["status"] == "started" and entry.get("job") == job for entry in history.listing
    )
