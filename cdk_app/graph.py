"""A spec's job graph as text: Mermaid (renders in GitHub Markdown) or Graphviz DOT.

Drawn from the IR, so the picture is the workflow the loader accepted: one cluster per phase,
``after`` edges inside it, phases joined in run order (``Workflow.phase_order``).
"""

from __future__ import annotations

from collections.abc import Callable

from runtime.definition.model import Job, Workflow


def _mermaid_text(text: str) -> str:
    return text.replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")


def _mermaid_node(job: Job) -> str:
    if job.when is None:
        return f'job_{job.name}["{job.name}"]'
    return f'job_{job.name}{{{{"{job.name}<br/>when {_mermaid_text(job.when)}"}}}}'


def render_mermaid(workflow: Workflow) -> str:
    """A flowchart: a subgraph per phase, jobs left to right inside, phases top to bottom joined
    by thick arrows; a job with a condition is a hexagon showing it. Ids are prefixed because
    names like ``end`` are Mermaid keywords."""
    lines = ["flowchart TB"]
    for phase in workflow.phases:
        lines += [f'    subgraph phase_{phase.name}["{phase.name}"]', "        direction LR"]
        lines += [f"        {_mermaid_node(job)}" for job in phase.jobs]
        lines += [f"        job_{dep} --> job_{job.name}" for job in phase.jobs for dep in job.after]
        lines.append("    end")
    order = workflow.phase_order()
    lines += [
        f"    phase_{before.name} ==> phase_{after.name}"
        for before, after in zip(order, order[1:], strict=False)
    ]
    return "\n".join(lines) + "\n"


def _dot_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _dot_text(text: str) -> str:
    return f'"{_dot_escape(text)}"'


def _dot_label(job: Job) -> str:
    """Name and condition on two lines (DOT's own ``\\n`` escape)."""
    return f'"{_dot_escape(job.name)}\\nwhen {_dot_escape(job.when or "")}"'


def render_dot(workflow: Workflow) -> str:
    """Graphviz: a cluster per phase; the edge between phases runs from the last job of one to
    the first of the next, clipped to the cluster borders (``compound``, ``ltail``/``lhead``)."""
    lines = [
        f"digraph {_dot_text(workflow.name)} {{",
        "    rankdir=LR;",
        "    compound=true;",
        "    node [shape=box, style=rounded];",
    ]
    for phase in workflow.phases:
        lines += [
            f"    subgraph {_dot_text('cluster_' + phase.name)} {{",
            f"        label={_dot_text(phase.name)};",
        ]
        for job in phase.jobs:
            condition = "" if job.when is None else f", shape=hexagon, label={_dot_label(job)}"
            lines.append(f"        {_dot_text(job.name)} [id={_dot_text('job_' + job.name)}{condition}];")
        lines += [
            f"        {_dot_text(dep)} -> {_dot_text(job.name)};" for job in phase.jobs for dep in job.after
        ]
        lines.append("    }")
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
