"""Checking a run input against its workflow's ``input_schema`` where runs start (``start``,
``run``, the starter function).

jsonschema is imported when a schema is checked, not with this module: the starter function has
it in the dependency layer (``runtime/requirements.txt``, pinned beside pymongo), the other
handlers never load it.

``format`` is checked for ``CHECKED_FORMATS`` only: the formats jsonschema checks with nothing but
its own dependencies, so a run input is checked the same on this machine (whose environment may
have optional packages that check more, ``idna`` or ``jsonpointer``) as in the Lambda layer. Every
other format (``date-time`` and ``time`` need ``rfc3339-validator``, ``uri`` needs ``rfc3987``, ...)
is an annotation, as JSON Schema 2020-12 makes it by default.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from runtime.errors import RunError

if TYPE_CHECKING:
    from jsonschema import FormatChecker

CHECKED_FORMATS = frozenset({"date", "email", "idn-email", "ipv4", "ipv6", "regex", "uuid"})
"""The ``format`` values a run input is checked against (``email`` and ``idn-email``: the value
has an ``@``; ``date``: a real ``YYYY-MM-DD`` date; ``ipv4``, ``ipv6``, ``uuid``: Python's own
parsers; ``regex``: Python's ``re`` compiles it)."""


def _format_checker() -> FormatChecker:
    """jsonschema's checkers of ``CHECKED_FORMATS`` (draft 2020-12), and no others."""
    from jsonschema import Draft202012Validator, FormatChecker

    draft = Draft202012Validator.FORMAT_CHECKER.checkers
    checker = FormatChecker(formats=())
    for name in sorted(CHECKED_FORMATS):
        check, raises = draft[name]
        checker.checks(name, raises)(check)
    return checker


def input_problems(
    schema: Mapping[str, Any], run_input: object
) -> Iterator[tuple[tuple[str | int, ...], str, str]]:
    """Every way ``run_input`` fails ``schema`` (its ``format``s: ``CHECKED_FORMATS``): (path
    parts inside the input, its JSON path, message), in path order."""
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(dict(schema), format_checker=_format_checker())
    errors = validator.iter_errors(run_input)
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
