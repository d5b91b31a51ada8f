"""Running the CLI in-process, as a test sees it: the exit code, stdout and stderr."""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass
from typing import Any

from cdk_app.cli.main import main


@dataclass(frozen=True)
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def report(self) -> dict[str, Any]:
        """stdout must be exactly one JSON object: json.loads refuses anything around it."""
        document = json.loads(self.stdout)
        assert isinstance(document, dict)
        return document

    @property
    def listing(self) -> list[Any]:
        """stdout must be exactly one JSON array."""
        document = json.loads(self.stdout)
        assert isinstance(document, list)
        return document

    def jobs(self) -> dict[str, tuple[str, int]]:
        return {name: (job["status"], job["attempts"]) for name, job in self.report["jobs"].items()}


def cli(*argv: str) -> CliResult:
    """``main`` in-process, with its own stdout and stderr; argparse's usage errors exit as they
    would in a process."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            exit_code = main(list(argv))
        except SystemExit as usage:
            exit_code = usage.code if isinstance(usage.code, int) else 2
    return CliResult(exit_code, stdout.getvalue(), stderr.getvalue())
