"""``python -m cdk_app validate`` and ``graph``: exit codes, output format, and the README's
graph kept equal to what the command prints."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cdk_app.cli.main import main
from cdk_app.graph import render_dot, render_mermaid
from runtime.definition.loader import load_workflow, spec_files

ROOT = Path(__file__).resolve().parents[1]
CYCLE = "tests/specs/invalid/cycle.yaml"
MANY = "tests/specs/invalid/many_problems.yaml"


@pytest.fixture(autouse=True)
def _in_repo_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)


def test_validate_with_no_path_checks_the_workflows_folder(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate"]) == 0
    count = len(spec_files([ROOT / "workflows"]))
    assert capsys.readouterr().out == f"{count} specs valid\n"


def test_validate_prints_every_problem_one_per_line_and_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", CYCLE, MANY, "workflows/catch_the_fish.yaml"]) == 1
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert len(lines) == 5
    assert lines[0].startswith(
        f"{CYCLE}: $.phases.thinking.jobs.cast.after[0]: jobs wait for each other in a cycle"
    )
    assert all(line.startswith(f"{MANY}: $.") for line in lines[1:])
    assert captured.err == "5 problems found\n"


def test_validate_a_missing_path_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "workflows", "no/such/spec.yaml"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "error: no such file or folder: no/such/spec.yaml" in captured.err


@pytest.mark.parametrize("argv", [[], ["frobnicate"], ["graph"], ["graph", "x.yaml", "--format", "svg"]])
def test_bad_usage_exits_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit, match="2"):
        main(argv)
    assert "usage: python -m cdk_app" in capsys.readouterr().err


def test_validate_follows_the_workflows_dir_of_cdk_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "cdk.json").write_text(
        json.dumps({"app": "python3 app.py", "context": {"workflowsDir": "specs"}})
    )
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "one.yaml").write_text("workflow: one\nphases: {p: {jobs: {a: {}}}}\n")
    monkeypatch.chdir(tmp_path)
    assert main(["validate"]) == 0
    assert capsys.readouterr().out == "1 spec valid\n"


def test_validate_without_cdk_json_uses_workflows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["validate"]) == 2
    assert "no such file or folder: workflows" in capsys.readouterr().err


def test_the_module_runs_as_a_program() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cdk_app", "validate", MANY],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert len(done.stdout.splitlines()) == 4
    assert done.stderr == "4 problems found\n"


def test_graph_mermaid_draws_phases_as_subgraphs_linked_in_run_order(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["graph", "workflows/catch_the_fish.yaml"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("flowchart TB\n")
    assert '    subgraph phase_thinking["thinking"]\n' in out
    assert '    subgraph phase_cooking["cooking"]\n' in out
    assert out.count("\n    end\n") == 2
    for edge in (
        "job_go_to_fishing_ground --> job_drink_beer",
        "job_catch_fish --> job_go_home",
        "job_clean --> job_cook",
    ):
        assert f"        {edge}\n" in out
    assert out.endswith("    phase_thinking ==> phase_cooking\n")


def test_graph_mermaid_shows_conditions_escaped() -> None:
    out = render_mermaid(load_workflow("workflows/nightly_report.yaml"))
    condition = "input.mode == 'full' && results.extract_orders.orders #gt; `0`"
    assert f'job_archive_orders{{{{"archive_orders<br/>when {condition}"}}}}' in out
    assert "==>" not in out


def test_graph_dot_draws_clusters_and_an_edge_between_them(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", "workflows/catch_the_fish.yaml", "--format", "dot"]) == 0
    out = capsys.readouterr().out
    assert out.startswith('digraph "catch_the_fish" {\n')
    assert 'subgraph "cluster_thinking" {' in out
    assert 'subgraph "cluster_cooking" {' in out
    assert '"catch_fish" -> "go_home";' in out
    assert '"go_home" -> "clean" [ltail="cluster_thinking", lhead="cluster_cooking", penwidth=2];' in out
    assert out == render_dot(load_workflow("workflows/catch_the_fish.yaml"))


def test_graph_of_an_invalid_spec_reports_its_problems(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", CYCLE]) == 1
    assert capsys.readouterr().out.startswith(f"{CYCLE}: $.phases.thinking.jobs.cast.after[0]:")


def test_graph_of_a_missing_file_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", "nope.yaml"]) == 2
    assert "no such file: nope.yaml" in capsys.readouterr().err


def test_the_readme_graph_is_what_the_graph_command_prints() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```mermaid\n(.*?)```", readme, flags=re.DOTALL)
    assert render_mermaid(load_workflow("workflows/catch_the_fish.yaml")) in blocks


def test_validate_names_each_file_it_skipped_in_a_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "one.yaml").write_text("workflow: one\nphases: {p: {jobs: {a: {}}}}\n")
    (tmp_path / "settings.yaml").write_text("region: eu-west-1\n")
    assert main(["validate", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [
        f"{tmp_path / 'settings.yaml'}: skipped: not a spec (a spec has 'workflow' at its top level, the "
        "seed's object 'purposeId'); keep other files out of the folder to silence this",
        "1 spec valid",
    ]
    assert captured.err == ""


def test_validate_prints_warnings_and_still_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "tests/specs/warning/imports.yaml"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(": ")[1:3] for line in lines[:2]] == [
        ["$.phases.build.jobs.report.code", "warning"],
        ["$.phases.build.jobs.single.code", "warning"],
    ]
    assert lines[2:] == ["1 spec valid (2 warnings)"]


def test_validate_with_problems_and_warnings_exits_1_and_counts_both(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert (
        main(["validate", "tests/specs/warning/imports.yaml", "tests/specs/invalid/code_syntax_error.yaml"])
        == 1
    )
    captured = capsys.readouterr()
    assert (
        "code_syntax_error.yaml: $.phases.thinking.jobs.catch_fish.code: 'jobs/syntax_error.py' has a "
        in (captured.out)
    )
    assert captured.out.count(": warning: ") == 2
    assert captured.err == "1 problem found, 2 warnings\n"


def test_validate_refuses_a_job_environment_over_lambdas_4_kb() -> None:
    """Lambda refuses it only at deploy time, in the nested stack, and the stack rolls back."""
    done = subprocess.run(
        [sys.executable, "-m", "cdk_app", "validate", "tests/specs/invalid/env_over_4kb.yaml"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )

    assert done.returncode == 1
    assert done.stdout.startswith(
        "tests/specs/invalid/env_over_4kb.yaml: $.phases.fishing.jobs.catch_fish.env: "
        "job 'catch_fish' has 5,006 bytes of environment"
    )
    assert done.stderr == "1 problem found\n"
