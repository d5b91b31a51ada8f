"""Problems are values: where (source, JSON path, line) and what, and ``str()`` is the line the
CLI prints. Spec and config errors carry the same kind."""

from __future__ import annotations

from pathlib import Path

import pytest

from cdk_app.config import AppConfig, ConfigError
from runtime.definition.loader import load_workflow
from runtime.errors import Problem, Severity, SpecError

ROOT = Path(__file__).resolve().parents[1]
SPEC = "tests/specs/invalid/unknown_dependency.yaml"


def test_a_spec_problem_says_where_as_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    with pytest.raises(SpecError, match="unknown job 'catch_fsh'") as raised:
        load_workflow(SPEC)
    [problem] = raised.value.problems
    assert (problem.source, problem.path, problem.line, problem.severity) == (
        SPEC,
        "$.phases.thinking.jobs.go_home.after[0]",
        7,
        Severity.ERROR,
    )
    assert problem.message.startswith("unknown job 'catch_fsh' (did you mean 'catch_fish'?)")
    assert str(problem) == f"{SPEC}: $.phases.thinking.jobs.go_home.after[0]: {problem.message} (line 7)"
    assert str(raised.value) == str(problem)


def test_a_problem_in_the_text_points_at_line_and_column(tmp_path: Path) -> None:
    spec = tmp_path / "broken.json"
    spec.write_text('{"workflow": "w",\n  "phases": }')
    with pytest.raises(SpecError, match="invalid JSON") as raised:
        load_workflow(spec)
    [problem] = raised.value.problems
    assert (problem.path, problem.line, problem.column) == (None, 2, 13)
    assert str(problem) == f"{spec}: line 2, column 13: invalid JSON: Expecting value"


@pytest.mark.parametrize(
    ("problem", "line"),
    [
        (Problem("a.yaml", "$.x", "bad"), "a.yaml: $.x: bad"),
        (Problem("a.yaml", "$.x", "odd", 3, severity=Severity.WARNING), "a.yaml: $.x: warning: odd (line 3)"),
        (Problem("context", None, "keep one"), "context: keep one"),
    ],
    ids=["no-line", "warning", "no-path"],
)
def test_a_problem_prints_as_one_line(problem: Problem, line: str) -> None:
    assert str(problem) == line


def test_config_problems_are_problems_of_the_context() -> None:
    with pytest.raises(ConfigError, match="not both") as raised:
        AppConfig.from_mapping({"mongodbSecretArn": "x", "mongodbSecretName": "y"})
    first = raised.value.problems[0]
    assert isinstance(first, Problem)
    assert (first.source, first.path) == ("context", None)
    assert str(first) == "context: give mongodbSecretArn or mongodbSecretName, not both"
