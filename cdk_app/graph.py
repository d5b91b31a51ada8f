"""A spec's job graph as text: Mermaid (renders in GitHub Markdown) or Graphviz DOT.

Drawn from the IR, so the picture is the workflow the loader accepted: one cluster per phase,
``after`` edges inside it, phases joined in run order (``Workflow.phase_order``). A job's
``after`` naming an earlier phase's job is a dashed edge (a data dependency across phases); a
job whose ``join`` is not ``all`` (or that has ``depends``) has edges that end in a circle and its
node names the join (or shows the expression); a
``for_each`` job is one node with a double border that shows its expression (never a node per
item); a job with
``allow_failure`` is drawn dashed; the failure handlers (``on_failure``) and the exit handlers
(``on_exit``) are clusters of their own, apart from the run order.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable

from runtime.definition.model import EXIT_PHASE, HANDLERS_PHASE, Job, Phase, Workflow

HANDLERS_TITLE = "on_failure: when the run fails or is cancelled"
ON_EXIT_TITLE = "on_exit: when the run ends, however it ends"


def calls(job: Job) -> str | None:
    """What a job that runs no code of its own calls: ``invoke <function>``, ``<service>
    <action> <resource>``, ``<METHOD> <host>``, ``workflow <child>``; None for any other job."""
    if job.invoke is not None:
        return f"invoke {job.invoke.rsplit(':function:', 1)[-1]}"
    if job.call is not None:
        return (
            f"{job.call.service} {job.call.action} {job.call.resource.rsplit(':', 1)[-1].rsplit('/', 1)[-1]}"
        )
    if job.http is not None:
        return f"{job.http.method} {urllib.parse.urlsplit(job.http.url).netloc}"
    if job.child_workflow is not None:
        return f"workflow {job.child_workflow.name}"
    return None


def _notes(job: Job) -> list[str]:
    """The lines under a job's name: what it calls, its condition, its items, its join, its
    tolerance."""
    called = calls(job)
    notes = [] if called is None else [called]
    if job.when is not None:
        notes.append(f"when {job.when}")
    if job.for_each is not None:
        notes.append(f"for each {job.for_each}")
        notes.append(f"at most {job.max_concurrency} at once, tolerates {job.tolerated_failures}")
    if job.depends is not None:
        notes.append(f"depends {job.depends}")
    elif job.join != "all" and job.after:
        notes.append(f"join {job.join}")
    if job.allow_failure is True:
        notes.append("allow_failure")
    elif job.allow_failure:
        notes.append(f"allow_failure {', '.join(job.allow_failure)}")
    if job.fails_run:
        notes.append("fails_run")
    return notes


def _decides(job: Job) -> bool:
    """Whether the job's edges end in a circle: a join other than ``all``, or a ``depends``."""
    return job.join != "all" or job.depends is not None


def _title(phase: Phase) -> str:
    return {HANDLERS_PHASE: HANDLERS_TITLE, EXIT_PHASE: ON_EXIT_TITLE}.get(phase.name, phase.name)


def _mermaid_text(text: str) -> str:
    return text.replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")


def _mermaid_node(job: Job) -> str:
    label = "<br/>".join([job.name, *map(_mermaid_text, _notes(job))])
    if job.when is None and job.for_each is not None:
        return f'job_{job.name}[["{label}"]]'
    if job.when is None:
        return f'job_{job.name}["{label}"]'
    return f'job_{job.name}{{{{"{label}"}}}}'


def _mermaid_edge(dep: str, job: Job, phase: Phase) -> str:
    local = dep in phase.local_after(job)
    arrow = ("--o" if local else "-.-o") if _decides(job) else ("-->" if local else "-.->")
    return f"job_{dep} {arrow} job_{job.name}"


def render_mermaid(workflow: Workflow) -> str:
    """A flowchart: a subgraph per phase, jobs left to right inside, phases top to bottom joined
    by thick arrows; a job with a condition is a hexagon showing it. Ids are prefixed because
    names like ``end`` are Mermaid keywords."""
    lines = ["flowchart TB"]
    across: list[str] = []
    for phase in workflow.all_phases():
        lines += [f'    subgraph phase_{phase.name}["{_title(phase)}"]', "        direction LR"]
        lines += [f"        {_mermaid_node(job)}" for job in phase.jobs]
        for job in phase.jobs:
            for dep in job.after:
                edge = _mermaid_edge(dep, job, phase)
                (lines if dep in phase.local_after(job) else across).append(f"        {edge}")
        lines.append("    end")
    lines += [edge.replace("        ", "    ", 1) for edge in across]
    order = workflow.phase_order()
    lines += [
        f"    phase_{before.name} ==> phase_{after.name}"
        for before, after in zip(order, order[1:], strict=False)
    ]
    tolerated = [job.name for job in workflow.jobs() if job.allow_failure]
    if tolerated:
        lines.append("    classDef tolerated stroke-dasharray: 5 5")
        lines.append(f"    class {','.join('job_' + name for name in tolerated)} tolerated")
    return "\n".join(lines) + "\n"


def _dot_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _dot_text(text: str) -> str:
    return f'"{_dot_escape(text)}"'


def _dot_label(job: Job) -> str:
    """Name and notes on lines of their own (DOT's own ``\\n`` escape)."""
    return '"' + "\\n".join(_dot_escape(line) for line in [job.name, *_notes(job)]) + '"'


def _dot_node(job: Job) -> str:
    attributes = [f"id={_dot_text('job_' + job.name)}"]
    if _notes(job):
        attributes.append(f"label={_dot_label(job)}")
    if job.when is not None:
        attributes.append("shape=hexagon")
    if job.allow_failure:
        attributes.append('style="rounded,dashed"')
    if job.for_each is not None:
        attributes.append("peripheries=2")
    return f"{_dot_text(job.name)} [{', '.join(attributes)}];"


def _dot_edge(dep: str, job: Job, phase: Phase) -> str:
    attributes = [] if dep in phase.local_after(job) else ["style=dashed"]
    if _decides(job):
        attributes.append("arrowhead=odot")
    suffix = f" [{', '.join(attributes)}]" if attributes else ""
    return f"{_dot_text(dep)} -> {_dot_text(job.name)}{suffix};"


def render_dot(workflow: Workflow) -> str:
    """Graphviz: a cluster per phase; the edge between phases runs from the last job of one to
    the first of the next, clipped to the cluster borders (``compound``, ``ltail``/``lhead``)."""
    lines = [
        f"digraph {_dot_text(workflow.name)} {{",
        "    rankdir=LR;",
        "    compound=true;",
        "    node [shape=box, style=rounded];",
    ]
    across: list[str] = []
    for phase in workflow.all_phases():
        lines += [
            f"    subgraph {_dot_text('cluster_' + phase.name)} {{",
            f"        label={_dot_text(_title(phase))};",
        ]
        if phase.name == HANDLERS_PHASE:
            lines.append("        style=dashed; color=red;")
        elif phase.name == EXIT_PHASE:
            lines.append("        style=dashed;")
        lines += [f"        {_dot_node(job)}" for job in phase.jobs]
        for job in phase.jobs:
            for dep in job.after:
                local = dep in phase.local_after(job)
                (lines if local else across).append(
                    ("        " if local else "    ") + _dot_edge(dep, job, phase)
                )
        lines.append("    }")
    lines += across
    order = workflow.phase_order()
    for before, after in zip(order, order[1:], strict=False):
        last = [job for job in before.jobs if not before.dependents(job.name)][-1]
        first = after.roots[0]
        clusters = f"ltail={_dot_text('cluster_' + before.name)}, lhead={_dot_text('cluster_' + after.name)}"
        lines.append(f"    {_dot_text(last.name)} -> {_dot_text(first.name)} [{clusters}, penwidth=2];")
    lines.append("}")
    return "\n".join(lines) + "\n"


RENDERERS: dict[str, Callable[[Workflow], str]] = {"mermaid": render_mermaid, "dot": render_dot}
"""The choices of ``graph --format``, by name."""
