"""Build-time spec loading: file -> document -> JSON Schema -> semantic checks -> the IR.

Every stage collects problems instead of stopping at the first, and ``SpecError`` carries all of
them as ``Problem`` values whose lines read ``<file>: <json path>: <what is wrong and what would
be right>``. No input, however broken, escapes as anything but ``SpecError``.

This module is the loader's public face; each stage is a module beside it: ``reading``
(YAML/JSON), ``schema``, ``canonical`` and ``seed`` (the two formats), ``job_code``, ``checks``,
``build`` (the IR) and ``discovery`` (which files are specs). It reads YAML and checks JSON
Schema, so only build-time code imports it; the Lambda handlers get the compiled ``Workflow``
(``Workflow.to_document``), never the YAML.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

from runtime.definition.build import compile_file, load_workflow, workflow_from_document
from runtime.definition.canonical import RESERVED_ENV
from runtime.definition.children import child_workflow_problems
from runtime.definition.discovery import SPEC_MARKERS, SPEC_SUFFIXES, SkippedFile, discover, spec_files
from runtime.definition.draft import IGNORED_KEYS, SPEC_KEYS
from runtime.definition.expressions import WHEN_ROOTS
from runtime.definition.model import Workflow
from runtime.definition.reading import MAX_DEPTH, MAX_NODES
from runtime.definition.report import did_you_mean
from runtime.definition.schema import SCHEMA_PATH, name_pattern
from runtime.definition.seed import SEED_END
from runtime.errors import Problem, RunError, SpecError

__all__ = [
    "IGNORED_KEYS",
    "MAX_DEPTH",
    "MAX_NODES",
    "RESERVED_ENV",
    "SCHEMA_PATH",
    "SEED_END",
    "SPEC_KEYS",
    "SPEC_MARKERS",
    "SPEC_SUFFIXES",
    "WHEN_ROOTS",
    "SkippedFile",
    "SpecCheck",
    "check_specs",
    "load_workflow",
    "load_workflows",
    "name_pattern",
    "spec_files",
    "workflow_from_document",
    "workflow_in_folder",
]


@dataclass(frozen=True)
class SpecCheck:
    """Everything ``validate`` reports about a set of specs."""

    workflows: tuple[Workflow, ...]
    """The specs that loaded."""
    problems: tuple[Problem, ...]
    """Errors, of every file: any of them fails the set."""
    warnings: tuple[Problem, ...]
    """Worth a look, never a failure (an import nothing provides)."""
    skipped: tuple[SkippedFile, ...]
    """Files in the folders that are not specs."""


def check_specs(paths: Sequence[str | PathLike[str]]) -> SpecCheck:
    """Load every spec under ``paths`` (files or folders) and collect what is wrong with them,
    including two files that define the same workflow id (their stacks would clash)."""
    found = discover(paths)
    workflows: list[Workflow] = []
    problems = list(found.problems)
    warnings: list[Problem] = []
    defined_in: dict[str, Path] = {}
    for file in found.specs:
        workflow = compile_file(file)
        problems += file.report.problems
        warnings += file.report.warnings
        if workflow is None:
            continue
        if workflow.name in defined_in:
            problems.append(
                Problem(
                    str(file.path),
                    "$.workflow",
                    f"workflow id {workflow.name!r} is also used by {defined_in[workflow.name]}; "
                    "each workflow needs its own id",
                )
            )
        defined_in.setdefault(workflow.name, file.path)
        workflows.append(workflow)
    problems += child_workflow_problems(workflows, all_loaded=len(workflows) == len(found.specs))
    return SpecCheck(tuple(workflows), tuple(problems), tuple(warnings), tuple(found.skipped))


def workflow_in_folder(folder: str | PathLike[str], name: str) -> Workflow:
    """Workflow ``name`` as the specs of ``folder`` define it now; ``RunError`` when none loads
    (with the problems of the files that did not load, and the names that did)."""
    check = check_specs([folder])
    definition = next((workflow for workflow in check.workflows if workflow.name == name), None)
    if definition is None:
        problems = "".join(f"; {problem}" for problem in check.problems)
        known = [workflow.name for workflow in check.workflows]
        raise RunError(
            f"no spec of workflow {name!r} loads from {folder}{did_you_mean(name, known)}{problems}"
        )
    return definition


def load_workflows(paths: Sequence[str | PathLike[str]]) -> list[Workflow]:
    """Load every spec under ``paths``; one ``SpecError`` lists the problems of all files."""
    check = check_specs(paths)
    if check.problems:
        raise SpecError(check.problems)
    return list(check.workflows)
