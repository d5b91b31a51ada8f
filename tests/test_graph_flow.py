"""``graph`` draws the data flow and failure rules: cross-phase dependencies dashed, ``join: any``
with circle-ended edges and a node mark, tolerated jobs dashed, the failure handlers in a
cluster of their own."""

from __future__ import annotations

from pathlib import Path

from cdk_app.graph import HANDLERS_TITLE, render_dot, render_mermaid
from runtime.definition.loader import load_workflow

FLOW = Path(__file__).resolve().parent / "specs" / "flow"


def test_mermaid_marks_cross_phase_edges_any_joins_tolerated_jobs_and_the_handlers() -> None:
    out = render_mermaid(load_workflow(FLOW / "ml_pipeline.yaml"))

    assert "    job_prepare -.-> job_train_small\n" in out  # across phases: dashed, outside the subgraphs
    assert "    job_train_small -.-o job_evaluate\n" in out  # across phases into an any-join
    assert 'job_evaluate["evaluate<br/>join any"]' in out
    assert 'job_train_large["train_large<br/>allow_failure"]' in out
    assert "    class job_train_large tolerated\n" in out
    assert f'    subgraph phase_on_failure["{HANDLERS_TITLE}"]\n' in out
    assert "phase_evaluate ==> phase_on_failure" not in out  # the handlers are not in the run order


def test_mermaid_draws_a_same_phase_any_join_with_a_circle_inside_its_phase() -> None:
    out = render_mermaid(load_workflow(FLOW / "orders_any_join.yaml"))

    approval = out[
        out.index('subgraph phase_approval["approval"]') : out.index("    end", out.index("phase_approval"))
    ]
    assert "job_manual_review --o job_ship" in approval
    assert "job_manual_review --> job_ship_all" in approval
    assert "job_fraud -.-> job_manual_review" in out


def test_dot_draws_the_same_marks() -> None:
    out = render_dot(load_workflow(FLOW / "handlers_join_any.yaml"))

    assert 'subgraph "cluster_on_failure" {' in out
    assert "style=dashed; color=red;" in out
    assert '"refund" -> "cleanup" [arrowhead=odot];' in out
    assert '"refund" -> "audit";' in out
    tolerant = render_dot(load_workflow(FLOW / "tolerated_failure.yaml"))
    assert (
        '"optional" [id="job_optional", label="optional\\nallow_failure", style="rounded,dashed"];'
        in tolerant
    )
    assert '"optional" -> "cross_phase_any" [style=dashed, arrowhead=odot];' in tolerant
