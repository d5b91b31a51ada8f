"""A job's ``depends``: a JMESPath over ``{jobs: {<after job>: {state, error, type, output}}}``
that says, where a ``join`` name is not enough, whether the job runs once the jobs
in its ``after`` have finished (Argo's ``depends``, with JMESPath instead of a language of its
own). It compiles, reads only ``jobs.<name>.<field>`` with a field the record has, compares a
``state`` only with a state a finished job can have; which jobs it reads is checked against the
job's ``after`` once every job is known (``dependencies``)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import jmespath
import jmespath.exceptions

from runtime.definition.draft import DraftJob
from runtime.definition.report import Report, did_you_mean, name_list, show

DEPENDS_ROOT = "jobs"
DEPENDS_FIELDS = ("state", "error", "type", "output")
"""What ``jobs.<name>`` holds: its state, and for a failed job its error and the error's type
(``None`` else), and for a job that succeeded its output."""
FINISHED_STATES = ("succeeded", "failed", "skipped", "upstream_failed")
"""The states a job in ``after`` can have when ``depends`` is evaluated."""


def read_depends(job: DraftJob, own: Mapping[str, Any], report: Report) -> dict[str, Any]:
    """The ``depends`` setting of ``job`` when its spec has a string there, after its checks."""
    expression = own.get("depends")
    if not isinstance(expression, str):
        return {}
    path = (*job.path, "depends")
    try:
        parsed = jmespath.compile(expression).parsed
    except (jmespath.exceptions.JMESPathError, RecursionError) as exc:
        summary = (str(exc).splitlines() or [type(exc).__name__])[0].rstrip(":")
        report.add(path, f"invalid JMESPath {show(expression)}: {summary}")
        return {}
    for chain in _chains(parsed):
        if chain[0] != DEPENDS_ROOT:
            report.add(
                path,
                f"{show(expression)} reads {chain[0]!r}, but 'depends' sees only 'jobs' "
                f"(jobs.<job>.{{{','.join(DEPENDS_FIELDS)}}} of the jobs in its 'after')",
            )
            continue
        if len(chain) < 2:
            continue
        if chain[1] not in job.depends_reads:
            job.depends_reads.append(chain[1])
        if len(chain) > 2 and chain[2] not in DEPENDS_FIELDS:
            report.add(
                path,
                f"{show(expression)} reads jobs.{chain[1]}.{chain[2]}, but a job's record has only "
                f"{name_list(DEPENDS_FIELDS)}{did_you_mean(chain[2], list(DEPENDS_FIELDS))}",
            )
    for state in _compared_states(parsed):
        if state not in FINISHED_STATES:
            report.add(
                path,
                f"{show(expression)} compares a state with {state!r}, which no finished job has"
                f"{did_you_mean(state, list(FINISHED_STATES))}; a state is one of "
                f"{name_list(FINISHED_STATES)}",
            )
    return {"depends": expression}


def _chains(node: Mapping[str, Any]) -> Iterator[list[str]]:
    """The field paths read from the top (``jobs.a.state`` as ``['jobs', 'a', 'state']``)."""
    kind = node.get("type")
    children = [child for child in node.get("children", []) if isinstance(child, Mapping)]
    if kind == "field":
        yield [str(node["value"])]
        return
    if kind == "subexpression" and children:
        names = _field_names(children)
        if names is not None:
            yield names
            return
        yield from _chains(children[0])
        return
    if kind in ("index_expression", "projection", "value_projection", "filter_projection", "pipe"):
        if children:
            yield from _chains(children[0])
        return
    for child in children:
        yield from _chains(child)


def _field_names(children: list[Mapping[str, Any]]) -> list[str] | None:
    """A chain of plain fields, flattened (JMESPath nests them on the left)."""
    names: list[str] = []
    for child in children:
        if child.get("type") == "field":
            names.append(str(child["value"]))
        elif child.get("type") == "subexpression":
            inner = _field_names([c for c in child.get("children", []) if isinstance(c, Mapping)])
            if inner is None:
                return None
            names += inner
        else:
            return None
    return names


def _compared_states(node: Mapping[str, Any]) -> Iterator[str]:
    """The string literals a ``jobs.<job>.state`` is compared with."""
    children = [child for child in node.get("children", []) if isinstance(child, Mapping)]
    if node.get("type") == "comparator" and len(children) == 2:
        for side, other in (children, children[::-1]):
            names = _field_names([side]) if side.get("type") in ("subexpression", "field") else None
            if (
                names is not None
                and len(names) == 3
                and names[0] == DEPENDS_ROOT
                and names[2] == "state"
                and other.get("type") == "literal"
                and isinstance(other.get("value"), str)
            ):
                yield str(other["value"])
    for child in children:
        yield from _compared_states(child)
