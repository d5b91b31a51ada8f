"""One convention for how every CLI command ends: ``<prog>: error: <message>`` on stderr and an
exit code from ``cdk_app.errors``, printed in one place (``cdk_app.cli.main.main``)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cdk_app.cli.main import main
from cdk_app.errors import EXIT_INTERRUPTED, EXIT_USAGE

ROOT = Path(__file__).resolve().parents[1]
MISSING = "no/such/spec.yaml"


@pytest.fixture(autouse=True)
def _in_repo_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["validate", MISSING], f"no such file or folder: {MISSING}"),
        (["graph", MISSING], f"no such file: {MISSING}"),
        (["run", MISSING], f"no such file: {MISSING}"),
        (["start", MISSING, "--mongo-uri", "mongodb://127.0.0.1:9"], f"no such file: {MISSING}"),
        (
            ["status", "any", "--mongo-uri", "postgres://localhost"],
            "invalid --mongo-uri 'postgres://localhost'",
        ),
    ],
    ids=lambda value: value[0] if isinstance(value, list) else None,
)
def test_every_command_reports_a_usage_error_as_one_prog_error_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == EXIT_USAGE

    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"python -m cdk_app {argv[0]}: error: {message}")
    assert len(captured.err.splitlines()) == 1


@pytest.mark.parametrize(
    ("target", "argv"),
    [
        # The commands import what they run on when they run (start-up), from these modules.
        ("runtime.definition.loader.check_specs", ["validate", "workflows"]),
        ("runtime.definition.build.load_workflow", ["graph", "workflows/catch_the_fish.yaml"]),
        (
            "runtime.definition.loader.load_workflow",
            ["start", "workflows/catch_the_fish.yaml", "--mongo-uri", "x"],
        ),
    ],
    ids=lambda value: value[0] if isinstance(value, list) else None,
)
def test_ctrl_c_in_any_command_exits_130_without_a_traceback(
    target: str, argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(*_: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(target, interrupted)

    assert main(argv) == EXIT_INTERRUPTED
    assert capsys.readouterr().err == f"python -m cdk_app {argv[0]}: interrupted\n"


def test_exit_codes_are_stated_once() -> None:
    assignment = re.compile(r"^\s*EXIT_\w+(\s*,\s*EXIT_\w+)*\s*=", re.MULTILINE)
    stated_in = sorted(
        str(path.relative_to(ROOT))
        for path in (ROOT / "cdk_app").rglob("*.py")
        if assignment.search(path.read_text(encoding="utf-8"))
    )
    assert stated_in == ["cdk_app/errors.py"]
