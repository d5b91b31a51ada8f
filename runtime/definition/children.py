"""Child workflows in a spec: a job's ``workflow: {name, input}`` (the job runs another workflow
of the same app as its attempt, and its output is the child run's) and a spec's top-level
``output`` (what a run of it gives its parent). Each spec is checked alone here; which workflow
names exist, and that no workflows call each other in a cycle, is checked across the app's specs
(``child_workflow_problems``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from runtime.definition.draft import DraftJob, known_fields
from runtime.definition.expressions import compiled, root_fields
from runtime.definition.model import EXIT_PHASE, HANDLERS_PHASE, ChildWorkflow, Job, Workflow
from runtime.definition.report import JsonPath, Report, did_you_mean, json_path, name_list, show
from runtime.errors import Problem

EXCLUSIVE = ("code", "wait", "approval", "invoke", "http", "call", "for_each")
"""Keys a child workflow job has no use for: it runs no code of its own and starts one child run
per attempt."""

EXPRESSION_ROOTS = ("input", "results")
"""What a child's ``input`` and a spec's ``output`` read."""


def read_child_workflow(job: DraftJob, own: dict[str, Any], report: Report) -> dict[str, Any]:
    """The ``Job`` field the ``workflow`` key sets, with its problems reported (the schema has
    reported wrong types)."""
    if "workflow" not in own:
        return {}
    path = (*job.path, "workflow")
    for key in EXCLUSIVE:
        if key in own:
            report.add(
                (*job.path, key),
                f"a job that runs a child workflow runs no '{key}': remove '{key}' or 'workflow'",
            )
    fields = known_fields(own["workflow"], "child_workflow")
    name = fields.get("name")
    if not isinstance(name, str) or not name:
        return {}
    expression = fields.get("input")
    if isinstance(expression, str) and expression:
        reads = check_roots((*path, "input"), expression, report)
        job.workflow_reads += [member for member in reads if member not in job.workflow_reads]
    else:
        expression = None
    return {"child_workflow": ChildWorkflow(name=name, input=expression)}


def read_output(spec: Mapping[str, Any], report: Report) -> dict[str, Any]:
    """The ``Workflow`` field a spec's ``output`` sets."""
    expression = spec.get("output")
    if not isinstance(expression, str) or not expression:
        return {}
    check_roots(("output",), expression, report)
    return {"output": expression}


def check_roots(path: JsonPath, expression: str, report: Report) -> list[str]:
    """``expression`` compiles and reads only ``input`` and ``results``; the jobs it reads under
    ``results``."""
    parsed = compiled(path, expression, report)
    if parsed is None:
        return []
    reads: list[str] = []
    for root, member in root_fields(parsed):
        if root not in EXPRESSION_ROOTS:
            report.add(
                path,
                f"{show(expression)} reads {root!r}, but it sees only {name_list(EXPRESSION_ROOTS)} "
                f"(did you mean 'input.{root}'?)",
            )
        elif root == "results" and member is not None:
            reads.append(member)
    return reads


def job_path(job: Job) -> JsonPath:
    """Where ``job`` is written in its spec."""
    if job.phase in (HANDLERS_PHASE, EXIT_PHASE):
        return (job.phase, job.name)
    return ("phases", job.phase, "jobs", job.name)


def child_workflow_problems(workflows: Iterable[Workflow], all_loaded: bool = True) -> list[Problem]:
    """Across the specs of one app: a child workflow job naming no workflow of the app (told
    only when ``all_loaded``: a spec that did not load may define it), and workflows that call
    each other in a cycle (a run would start children for ever)."""
    by_name = {workflow.name: workflow for workflow in workflows}
    problems: list[Problem] = []
    for workflow in by_name.values():
        for job in workflow.jobs():
            if job.child_workflow is None:
                continue
            called = job.child_workflow.name
            where = json_path((*job_path(job), "workflow", "name"))
            if called not in by_name and all_loaded:
                problems.append(
                    Problem(
                        workflow.source or workflow.name,
                        where,
                        f"job {job.name!r} runs workflow {called!r}, which no spec of this app defines"
                        f"{did_you_mean(called, by_name)} (it knows: {name_list(sorted(by_name))})",
                    )
                )
            if called not in by_name:
                continue
            cycle = _cycle_through(workflow.name, called, by_name)
            if cycle is not None:
                problems.append(
                    Problem(
                        workflow.source or workflow.name,
                        where,
                        f"job {job.name!r} runs workflow {called!r}, and the workflows call each other in "
                        f"a cycle ({' -> '.join(cycle)}): a run would start child runs for ever; break "
                        "the cycle",
                    )
                )
    return problems


def called_workflows(workflow: Workflow, by_name: Mapping[str, Workflow]) -> list[Workflow]:
    """The workflows ``workflow`` runs as children, directly or through its children, each once
    (those ``by_name`` knows)."""
    found: dict[str, Workflow] = {}
    pending = _calls(workflow)
    while pending:
        name = pending.pop()
        if name in found or name == workflow.name or name not in by_name:
            continue
        found[name] = by_name[name]
        pending += _calls(by_name[name])
    return list(found.values())


def _calls(workflow: Workflow) -> list[str]:
    return [job.child_workflow.name for job in workflow.jobs() if job.child_workflow is not None]


def _cycle_through(start: str, called: str, by_name: Mapping[str, Workflow]) -> list[str] | None:
    """The calls that lead from ``called`` back to ``start`` (``start`` first and last), or None."""
    trail: list[str] = [start, called]
    seen: set[str] = set()

    def walk(name: str) -> bool:
        if name == start:
            return True
        if name in seen or name not in by_name:
            return False
        seen.add(name)
        for nxt in _calls(by_name[name]):
            trail.append(nxt)
            if walk(nxt):
                return True
            trail.pop()
        return False

    return trail if walk(called) else None
