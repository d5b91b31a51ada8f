"""Checking a run input against its workflow's ``input_schema`` where runs start (``start``,
``run``, the starter function).

jsonschema is imported when a schema is checked, not with this module: the starter function has
it in the dependency layer (``runtime/requirements.txt``, pinned beside pymongo), the other
handlers never load it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from runtime.errors import RunError


def input_problems(
    schema: Mapping[str, Any], run_input: object
) -> Iterator[tuple[tuple[str | int, ...], str, str]]:
    """Every way ``run_input`` fails ``schema``: (path parts inside the input, its JSON path,
    message), in path order."""
    from jsonschema import Draft202012Validator

    errors = Draft202012Validator(dict(schema)).iter_errors(run_input)
    for error in sorted(errors, key=lambda found: [str(part) for part in found.absolute_path]):
        yield tuple(error.absolute_path), error.json_path, error.message


class InputRefused(RunError):
    """The run input does not match the workflow's ``input_schema``; ``problems`` lists each
    place (``$.path``) and what is wrong there."""

    def __init__(self, workflow: str, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(
            f"the input does not match the input_schema of workflow {workflow!r}: " + "; ".join(problems)
        )


def check_input(workflow: str, schema: Mapping[str, Any] | None, run_input: object) -> None:
    """Raise ``InputRefused`` with every problem when ``run_input`` does not match ``schema``."""
    if schema is None:
        return
    problems = [f"{where}: {message}" for _, where, message in input_problems(schema, run_input)]
    if problems:
        raise InputRefused(workflow, problems)
