"""The CLI from any folder of the project: ``./wf`` finds the repository from its own location,
the user's paths stay relative to the user's folder, and cdk.json (found upwards, as git finds
.git) says where the workflows are."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pymongo
import pytest

from cdk_app.cli.main import main
from runtime.definition.loader import spec_files

ROOT = Path(__file__).resolve().parents[1]
LAUNCHER = ROOT / "wf"
WORKFLOW_COUNT = len(spec_files([ROOT / "workflows"]))


def launch(*argv: str, cwd: Path, launcher: Path = LAUNCHER) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(launcher), *argv], cwd=cwd, capture_output=True, text=True, check=False)


def test_validate_from_a_subfolder_checks_the_projects_workflows(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(ROOT / "tests" / "specs")

    assert main(["validate"]) == 0
    assert capsys.readouterr().out == f"{WORKFLOW_COUNT} specs valid\n"


def test_workflows_dir_resolves_from_cdk_json_and_problems_name_files_from_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "cdk.json").write_text(json.dumps({"context": {"workflowsDir": "specs"}}))
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "bad.yaml").write_text("workflow: bad\nphases: {p: {jobs: {a: {after: [b]}}}}\n")
    (tmp_path / "docs" / "notes").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "docs" / "notes")

    assert main(["validate"]) == 1
    assert capsys.readouterr().out.startswith(
        "../../specs/bad.yaml: $.phases.p.jobs.a.after[0]: unknown job 'b'"
    )


def test_an_unreadable_cdk_json_above_is_named_from_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "cdk.json").write_text("{not json")
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")

    assert main(["validate"]) == 2
    assert capsys.readouterr().err.startswith("python -m cdk_app validate: error: cannot read ../cdk.json: ")


def test_the_launcher_validates_from_a_subfolder() -> None:
    done = launch("validate", cwd=ROOT / "tests")

    assert (done.returncode, done.stdout, done.stderr) == (0, f"{WORKFLOW_COUNT} specs valid\n", "")


def test_the_launcher_keeps_paths_relative_to_the_users_folder() -> None:
    done = launch("validate", "specs/invalid/cycle.yaml", cwd=ROOT / "tests")

    assert done.returncode == 1
    assert done.stdout.startswith("specs/invalid/cycle.yaml: $.phases.thinking.jobs.cast.after[0]: ")
    assert done.stderr == "1 problem found\n"


def test_the_launcher_works_through_a_symlink(tmp_path: Path) -> None:
    (tmp_path / "wf").symlink_to(LAUNCHER)

    done = launch("graph", "../workflows/catch_the_fish.yaml", cwd=ROOT / "tests", launcher=tmp_path / "wf")

    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("flowchart TB\n")


def test_modules_of_the_users_folder_do_not_shadow_the_clis(tmp_path: Path) -> None:
    # A job's code folder may well hold a module named like a library the loader imports.
    (tmp_path / "yaml.py").write_text("raise SystemExit('the folder yaml.py was imported')\n")

    done = launch("validate", str(ROOT / "workflows" / "catch_the_fish.yaml"), cwd=tmp_path)

    assert (done.returncode, done.stdout, done.stderr) == (0, "1 spec valid\n", "")


def test_the_launcher_runs_a_workflow_from_a_subfolder(
    mongo_uri: str, mongo_client: pymongo.MongoClient[dict]
) -> None:
    database = f"anywhere_{uuid.uuid4().hex[:12]}"
    try:
        done = launch(
            "run",
            "../workflows/catch_the_fish.yaml",
            "--json",
            "--mongo-uri",
            mongo_uri,
            "--database",
            database,
            cwd=ROOT / "docs",
        )
    finally:
        mongo_client.drop_database(database)

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "succeeded"


def test_the_launcher_without_a_venv_says_what_to_do(tmp_path: Path) -> None:
    shutil.copy(LAUNCHER, tmp_path / "wf")

    done = launch("validate", cwd=tmp_path, launcher=tmp_path / "wf")

    assert done.returncode == 2
    assert done.stderr.endswith(f"; run `make setup` in {tmp_path} first\n")


@pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")
@pytest.mark.parametrize(
    ("arguments", "spec"),
    [
        ([], "workflows/catch_the_fish.yaml"),
        (["SPEC=workflows/nightly_report.yaml"], "workflows/nightly_report.yaml"),
    ],
)
def test_make_run_runs_the_spec_given(arguments: list[str], spec: str) -> None:
    # --dry-run prints the recipe without running it (nor the set-up it depends on).
    done = subprocess.run(
        ["make", "--no-print-directory", "--dry-run", "run", *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "MAKEFLAGS": ""},
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == f'.venv/bin/python -m cdk_app run "{spec}"'
