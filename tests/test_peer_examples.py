"""The peers' documented examples, translated into the spec language and run with the test kit:
each test is the spec, the fake outcomes of its jobs, and the state of every job and of the run
the peer's documentation gives for them (issue 27). A translation that needed a sentinel job or
a workaround would not be one."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from cdk_app.console.views import run_json
from cdk_app.graph import render_dot, render_mermaid
from cdk_app.terminal.render import print_summary
from cdk_app.testkit import WorkflowTest, raises, returns, sequence
from runtime.definition.loader import load_workflow
from runtime.errors import SpecError


class CardDeclined(Exception):
    """The payment provider refused the card."""


@pytest.fixture
def peer(mongo_uri: str, tmp_path: Path) -> Iterator[Any]:
    """Open a test kit run of a spec written as YAML (loaded and validated as a file would be)."""
    opened: list[WorkflowTest] = []

    def open_spec(spec: str, **options: Any) -> WorkflowTest:
        path = tmp_path / f"spec{len(opened)}.yaml"
        path.write_text(spec)
        test = WorkflowTest(load_workflow(path), mongo_uri, **options)
        opened.append(test)
        return test

    yield open_spec
    for test in opened:
        test.close()


# -- Argo Workflows --------------------------------------------------------------------------------

DIAMOND = """
workflow: diamond
phases:
  dag:
    jobs:
      A: {}
      B: {after: [A]}
      C: {after: [A]}
      D: {after: [B, C]}
"""


def test_argo_dag_diamond(peer: Any) -> None:
    """Argo's dag-diamond: A, then B and C in parallel, then D once both succeeded
    (https://argo-workflows.readthedocs.io/en/latest/walk-through/dag/, examples/dag-diamond.yaml)."""
    run = peer(DIAMOND, fakes={"A": {"a": 1}, "B": {"b": 1}, "C": {"c": 1}, "D": {"d": 1}})
    run.start()
    run.assert_run("succeeded", jobs={"A": "succeeded", "B": "succeeded", "C": "succeeded", "D": "succeeded"})
    assert run.calls["D"][0]["results"] == {"B": {"b": 1}, "C": {"c": 1}}


def test_argo_dag_diamond_with_a_failed_branch_fails_and_never_runs_the_join(peer: Any) -> None:
    """Argo's dag-diamond when B fails: D, which needs B and C, is not run and the workflow fails
    (https://argo-workflows.readthedocs.io/en/latest/walk-through/dag/: "D depends on B and C")."""
    run = peer(
        DIAMOND.replace("B: {after: [A]}", "B: {after: [A], retries: 0}"),
        fakes={"B": raises(OSError("disk"))},
    )
    run.start()
    run.assert_run("failed", jobs={"A": "succeeded", "B": "failed", "C": "succeeded", "D": "upstream_failed"})


LOOPS_PARAM = """
workflow: loops_param
phases:
  dag:
    jobs:
      gen_number_list: {}
      sleep_n_sec:
        after: [gen_number_list]
        for_each: results.gen_number_list
        max_concurrency: 10
"""


def test_argo_loops_param(peer: Any) -> None:
    """Argo's loops-param: one step generates a list, the next runs once per item of it with
    `withParam` (https://argo-workflows.readthedocs.io/en/latest/walk-through/loops/,
    examples/loops-param-result.yaml)."""
    run = peer(
        LOOPS_PARAM, fakes={"gen_number_list": returns([3, 1, 2]), "sleep_n_sec": lambda e: e["item"] * 10}
    )
    run.start()
    run.assert_run("succeeded", jobs={"gen_number_list": "succeeded", "sleep_n_sec": "succeeded"})
    assert run.get().job("sleep_n_sec").output == [30, 10, 20]


ARGO_DEPENDS = "https://argo-workflows.readthedocs.io/en/latest/enhanced-depends-logic/"

DEPENDS = """
workflow: argo_depends
phases:
  dag:
    jobs:
      A: {retries: 0}
      B: {retries: 0}
      C: {after: [A, B], depends: "jobs.A.state == 'succeeded' || jobs.B.state == 'failed'"}
"""


@pytest.mark.parametrize(
    ("a", "b", "c", "run_status"),
    [
        ("succeeded", "succeeded", "succeeded", "succeeded"),
        ("failed", "failed", "succeeded", "succeeded"),
        ("succeeded", "failed", "succeeded", "succeeded"),
        ("failed", "succeeded", "upstream_failed", "failed"),
    ],
)
def test_argo_depends_expression(peer: Any, a: str, b: str, c: str, run_status: str) -> None:
    """Argo's enhanced depends logic: ``depends: "A.Succeeded || B.Failed"`` runs C when A
    succeeded or B failed, and not otherwise (ARGO_DEPENDS); a failure C runs on is handled, so
    the workflow's outcome is C's. Where C does not run because A failed, the workflow fails."""
    fakes = {name: raises(OSError(name)) for name, state in (("A", a), ("B", b)) if state == "failed"}
    run = peer(DEPENDS, fakes=fakes)
    run.start()
    run.assert_run(run_status, jobs={"A": a, "B": b, "C": c})


def test_a_depends_expression_reads_the_error_and_its_type(peer: Any) -> None:
    """Step Functions' Catch by error type (ErrorEquals), as a ``depends`` over the failed job's
    ``type`` (https://docs.aws.amazon.com/step-functions/latest/dg/concepts-error-handling.html)."""
    spec = """
workflow: charge
phases:
  pay:
    jobs:
      charge: {retries: 0}
      notify_customer: {after: [charge], depends: "jobs.charge.type == 'CardDeclined'"}
"""
    declined = peer(spec, fakes={"charge": raises(CardDeclined("insufficient funds"))})
    declined.start()
    declined.assert_run("succeeded", jobs={"charge": "failed", "notify_customer": "succeeded"})

    down = peer(spec, fakes={"charge": raises(ConnectionError("provider down"))})
    down.start()
    down.assert_run("failed", jobs={"charge": "failed", "notify_customer": "upstream_failed"})


def test_a_card_declined_is_caught_by_type_and_its_error_reaches_the_job_after(peer: Any) -> None:
    """Step Functions' Catch by type with a ResultPath: ``ErrorEquals: ["CardDeclined"]`` goes to
    the fallback with the error in its input, any other error fails the execution
    (https://docs.aws.amazon.com/step-functions/latest/dg/concepts-error-handling.html): two jobs
    and a join, the error as data in ``failures``."""
    spec = """
workflow: charge
phases:
  pay:
    jobs:
      charge: {retries: 0, allow_failure: [CardDeclined]}
      notify_customer: {after: [charge], join: one_failed, when: "failures.charge.type == 'CardDeclined'"}
"""
    declined = peer(spec, fakes={"charge": raises(CardDeclined("insufficient funds"))})
    declined.start()
    declined.assert_run("succeeded", jobs={"charge": "failed", "notify_customer": "succeeded"})
    failures = declined.calls["notify_customer"][0]["failures"]
    assert list(failures) == ["charge"]
    assert (failures["charge"]["type"], failures["charge"]["attempt"]) == ("CardDeclined", 1)
    assert failures["charge"]["error"].startswith("CardDeclined: insufficient funds")
    assert declined.get().job("charge").tolerated

    down = peer(spec, fakes={"charge": raises(ConnectionError("provider down"))})
    down.start()
    down.assert_run("failed", jobs={"charge": "failed", "notify_customer": "pending"})
    assert down.executions("notify_customer") == 0


RETRY_BACKOFF = """
workflow: retry_backoff
phases:
  main:
    jobs:
      retry_backoff:
        retry: {max: 10, delay: 1, backoff: 2, max_delay: 3600, jitter: none}
        max_duration: 60
"""


def test_argo_retry_backoff_with_max_duration(peer: Any) -> None:
    """Argo's retry-backoff: ``retryStrategy: {limit: 10, backoff: {duration: 1, factor: 2,
    maxDuration: 1m}}`` (https://argo-workflows.readthedocs.io/en/latest/retries/,
    examples/retry-backoff.yaml): attempts start at 0, 1, 3, 7, 15 and 31 s; the next would start
    at 63 s, past the minute, so the step fails after 6 attempts rather than 11."""
    run = peer(RETRY_BACKOFF, fakes={"retry_backoff": raises(RuntimeError("still down"))})
    run.start()
    report = run.run_until_idle()
    run.assert_run("failed", jobs={"retry_backoff": "failed"})
    assert run.executions("retry_backoff") == 6
    assert report.error is not None
    assert "past its max_duration of 60s: max duration exceeded: RuntimeError: still down" in report.error


def test_a_job_within_its_max_duration_is_retried_as_usual(peer: Any) -> None:
    run = peer(
        RETRY_BACKOFF,
        fakes={"retry_backoff": sequence(raises(OSError("a")), raises(OSError("b")), returns({"ok": True}))},
    )
    run.start()
    run.run_until_idle()
    run.assert_run("succeeded", jobs={"retry_backoff": "succeeded"})
    assert run.executions("retry_backoff") == 3


# -- AWS Step Functions ----------------------------------------------------------------------------

MAP_WITH_CATCH = """
workflow: map_catch
phases:
  process:
    jobs:
      list_items: {}
      process_item:
        after: [list_items]
        for_each: results.list_items
        tolerated_failures: "10%"
        retries: 0
      summarize: {after: [process_item]}
      fallback: {after: [process_item], join: one_failed}
"""


def _process(event: dict[str, Any]) -> Any:
    if event["item"] in (3, 7):
        raise ValueError(f"bad item {event['item']}")
    return event["item"]


@pytest.mark.parametrize(("items", "failed"), [(list(range(20)), False), (list(range(10)), True)])
def test_step_functions_map_with_tolerated_failure_percentage_and_a_catch(
    peer: Any, items: list[int], failed: bool
) -> None:
    """Step Functions' Map state with ``ToleratedFailurePercentage: 10`` and a ``Catch`` to a
    fallback state (https://docs.aws.amazon.com/step-functions/latest/dg/state-map-distributed.html
    #maprun-fail-threshold, and concepts-error-handling.html): two failed items of 20 (10%) are
    tolerated and the Map succeeds; two of 10 (20%) fail the Map, the Catch sends the error to the
    fallback and the execution succeeds through it."""
    run = peer(MAP_WITH_CATCH, fakes={"list_items": returns(items), "process_item": _process})
    run.start()
    if not failed:
        run.assert_run(
            "succeeded",
            jobs={
                "list_items": "succeeded",
                "process_item": "succeeded",
                "summarize": "succeeded",
                "fallback": "skipped",
            },
        )
        return
    run.assert_run(
        "succeeded",
        jobs={
            "list_items": "succeeded",
            "process_item": "failed",
            "summarize": "upstream_failed",
            "fallback": "succeeded",
        },
    )
    failure = run.calls["fallback"][0]["failures"]["process_item"]
    assert failure["error"].startswith("2 of 10 items of 'process_item' failed, more than the 1 it tolerates")
    assert run.get().job("process_item").caught


EXIT_HANDLERS = """
workflow: exit_handlers
phases:
  main:
    jobs:
      intentional_fail: {retries: 0}
on_failure:
  page: {}
on_exit:
  send_email: {}
  celebrate: {after: [send_email], when: "run.status == 'succeeded'"}
  cry: {after: [send_email], when: "run.status == 'failed'"}
"""


@pytest.mark.parametrize("fails", [True, False])
def test_argo_exit_handlers(peer: Any, fails: bool) -> None:
    """Argo's exit-handlers: ``onExit`` runs ``send-email`` whatever the workflow's status, then
    ``celebrate`` when it succeeded and ``cry`` when it failed, reading ``workflow.status``
    (https://argo-workflows.readthedocs.io/en/latest/walk-through/exit-handlers/,
    examples/exit-handlers.yaml); the exit handlers run after the failure handlers and the run ends
    as the workflow did."""
    fakes: dict[str, Any] = {"intentional_fail": raises(RuntimeError("boom"))} if fails else {}
    run = peer(EXIT_HANDLERS, fakes=fakes)
    run.start()
    if fails:
        run.assert_run(
            "failed",
            jobs={
                "intentional_fail": "failed",
                "page": "succeeded",
                "send_email": "succeeded",
                "celebrate": "skipped",
                "cry": "succeeded",
            },
        )
        outcome = run.calls["send_email"][0]["run"]
        assert (outcome["status"], list(outcome["failures"])) == ("failed", ["intentional_fail"])
        assert outcome["failures"]["intentional_fail"]["type"] == "RuntimeError"
        assert outcome["error"].startswith("job 'intentional_fail' failed after 1 attempt(s)")
        assert run.calls["page"][0]["phase"] == "on_failure"
    else:
        run.assert_run(
            "succeeded",
            jobs={
                "intentional_fail": "succeeded",
                "page": "pending",
                "send_email": "succeeded",
                "celebrate": "succeeded",
                "cry": "skipped",
            },
        )
        assert run.calls["send_email"][0]["run"] == {"status": "succeeded", "error": None, "failures": {}}


def test_the_graph_and_the_console_draw_the_exit_handlers_apart(peer: Any) -> None:
    run = peer(EXIT_HANDLERS)
    run.start()
    graph = render_mermaid(run.definition)
    assert 'subgraph phase_on_exit["on_exit: when the run ends, however it ends"]' in graph
    assert "when run.status == 'succeeded'" in graph
    document = run._store.read_run(run.get().run_id)
    assert document is not None
    phases = run_json(document, [], allow_actions=False)["phases"]
    assert [(phase["name"], phase["handlers"]) for phase in phases] == [
        ("main", False),
        ("on_failure", True),
        ("on_exit", True),
    ]
    assert phases[-1]["title"] == "on_exit: when the run ends, however it ends"


def test_a_failing_exit_handler_does_not_change_how_the_run_ends(peer: Any) -> None:
    """Argo: an exit handler that fails is recorded; the workflow's outcome is its own."""
    run = peer(EXIT_HANDLERS, fakes={"send_email": raises(OSError("smtp down"))})
    run.start()
    run.assert_run(
        "succeeded",
        jobs={"intentional_fail": "succeeded", "send_email": "failed", "celebrate": "upstream_failed"},
    )


def test_an_exit_handler_with_fails_run_fails_a_run_that_would_have_succeeded(peer: Any) -> None:
    """The issue's "unless the spec says so", as Airflow's teardown tasks say it with
    ``on_failure_fail_dagrun=True`` (https://airflow.apache.org/docs/apache-airflow/stable/howto/setup-and-teardown.html):
    an exit handler that must succeed for the run to count as succeeded."""
    spec = EXIT_HANDLERS.replace("  send_email: {}", "  send_email: {fails_run: true}")
    run = peer(spec, fakes={"send_email": raises(OSError("smtp down"))})
    run.start()
    run.assert_run("failed", jobs={"intentional_fail": "succeeded", "send_email": "failed"})
    error = run.get().error
    assert error is not None
    assert error.startswith("exit handler 'send_email' failed (it has fails_run): ")
    assert "smtp down" in error
    assert "fails_run" in render_mermaid(run.definition)

    # A run that failed on its own ends with its own error, whatever its exit handlers do.
    failing = peer(
        spec,
        fakes={"intentional_fail": raises(RuntimeError("boom")), "send_email": raises(OSError("smtp down"))},
    )
    failing.start()
    failing.assert_run("failed", jobs={"intentional_fail": "failed", "send_email": "failed"})
    assert str(failing.get().error).startswith("job 'intentional_fail' failed")


def test_fails_run_is_for_exit_handlers_only(tmp_path: Path) -> None:
    spec = tmp_path / "w.yaml"
    spec.write_text(
        "workflow: w\nphases:\n  p:\n    jobs:\n      a: {fails_run: true}\n"
        "on_failure:\n  page: {fails_run: true}\n"
    )
    with pytest.raises(SpecError) as raised:
        load_workflow(spec)
    text = str(raised.value)
    assert "$.phases.p.jobs.a.fails_run: only an exit handler (a job of on_exit) can set fails_run" in text
    assert "$.on_failure.page.fails_run: only an exit handler" in text


def test_a_redrive_after_the_exit_handlers_runs_them_again_for_the_new_end(peer: Any) -> None:
    run = peer(EXIT_HANDLERS, fakes={"intentional_fail": sequence(raises(RuntimeError("boom")), returns({}))})
    run.start()
    run.assert_run("failed", jobs={"intentional_fail": "failed", "cry": "succeeded"})

    run.redrive()

    run.assert_run(
        "succeeded",
        jobs={
            "intentional_fail": "succeeded",
            "send_email": "succeeded",
            "celebrate": "succeeded",
            "cry": "skipped",
        },
    )
    assert [call["run"]["status"] for call in run.calls["send_email"]] == ["failed", "succeeded"]


def test_a_cancelled_run_runs_its_exit_handlers_and_ends_cancelled(peer: Any) -> None:
    """Argo runs ``onExit`` when a workflow is stopped too; ``workflow.status`` says so."""
    spec = """
workflow: cancelled
phases:
  main:
    jobs:
      wait_a_day: {wait: 86400}
on_exit:
  tidy: {}
"""
    run = peer(spec)
    run.start()
    run.cancel("not today")
    run.assert_run("cancelled", jobs={"wait_a_day": "cancelled", "tidy": "succeeded"})
    assert run.calls["tidy"][0]["run"]["status"] == "cancelled"
    assert run.get().error == "cancelled: not today"


@pytest.mark.parametrize(
    ("items", "failing", "state"),
    [
        (100, 5, "succeeded"),  # 5 <= the count, 5 <= 10%
        (100, 6, "failed"),  # past the count first
        (20, 3, "failed"),  # past 10% (2) first
        (20, 2, "succeeded"),
    ],
)
def test_step_functions_tolerated_failure_count_and_percentage_together(
    peer: Any, items: int, failing: int, state: str
) -> None:
    """Step Functions' ``ToleratedFailureCount`` and ``ToleratedFailurePercentage`` set together:
    the Map fails when either is exceeded
    (https://docs.aws.amazon.com/step-functions/latest/dg/state-map-distributed.html#maprun-fail-threshold)."""
    spec = """
workflow: both_bounds
phases:
  process:
    jobs:
      list_items: {}
      process_item:
        after: [list_items]
        for_each: results.list_items
        tolerated_failures: {count: 5, percent: 10}
        retries: 0
"""

    def process(event: dict[str, Any]) -> Any:
        if event["item"] < failing:
            raise ValueError("bad")
        return event["item"]

    run = peer(spec, fakes={"list_items": returns(list(range(items))), "process_item": process})
    run.start()
    run.assert_run(state, jobs={"process_item": state})
    assert "at most 100 at once, tolerates 5 or 10%" in render_mermaid(run.definition)


# -- Apache Airflow trigger rules ------------------------------------------------------------------

AIRFLOW_RULES = "https://airflow.apache.org/docs/apache-airflow/stable/core-concepts/dags.html#trigger-rules"


def test_airflow_one_success_starts_at_the_first_success_without_waiting_for_the_rest(peer: Any) -> None:
    """Airflow's ``one_success``: "The task runs when at least one upstream task has succeeded",
    without waiting for every upstream task (AIRFLOW_RULES); the slow mirror keeps running and,
    when it fails, the run still succeeds: the join accepted it."""
    spec = """
workflow: mirrors
phases:
  fetch:
    jobs:
      fast_mirror: {}
      slow_mirror: {retries: 0}
      use_first: {after: [fast_mirror, slow_mirror], join: one_success}
"""
    run = peer(spec, fakes={"fast_mirror": {"url": "a"}, "slow_mirror": raises(TimeoutError("slow"))})
    # The slow mirror's invocation is held back: use_first starts on the fast one's success alone.
    run.start()
    run.assert_run(
        "succeeded", jobs={"fast_mirror": "succeeded", "slow_mirror": "failed", "use_first": "succeeded"}
    )
    assert run.calls["use_first"][0]["results"] == {"fast_mirror": {"url": "a"}}


def test_airflow_one_success_when_every_upstream_failed_is_upstream_failed(peer: Any) -> None:
    """Airflow's ``one_success`` when no upstream task succeeded: the task is
    ``upstream_failed`` and the DAG run fails (AIRFLOW_RULES)."""
    spec = """
workflow: mirrors
phases:
  fetch:
    jobs:
      a: {retries: 0}
      b: {retries: 0}
      use_first: {after: [a, b], join: one_success}
"""
    run = peer(spec, fakes={"a": raises(OSError("a")), "b": raises(OSError("b"))})
    run.start()
    run.assert_run("failed", jobs={"a": "failed", "b": "failed", "use_first": "upstream_failed"})
    assert "no job after it accepts the failure" in (run.get().error or "")


def test_airflow_all_done_runs_whatever_the_upstream_outcomes(peer: Any) -> None:
    """Airflow's ``all_done``: "All upstream tasks are done with their execution", whatever their
    state, as a clean-up task after work that may fail (AIRFLOW_RULES); the clean-up running is
    the failure accepted, so the run succeeds and ``on_failure`` does not start."""
    spec = """
workflow: cleanup
phases:
  work:
    jobs:
      create_cluster: {}
      run_query: {after: [create_cluster], retries: 0}
      delete_cluster: {after: [create_cluster, run_query], join: all_done}
on_failure:
  page: {}
"""
    run = peer(spec, fakes={"run_query": raises(ValueError("bad SQL"))})
    run.start()
    run.assert_run(
        "succeeded",
        jobs={
            "create_cluster": "succeeded",
            "run_query": "failed",
            "delete_cluster": "succeeded",
            "page": "pending",
        },
    )
    assert run.executions("page") == 0


def test_airflow_none_failed_min_one_success_joins_a_branch(peer: Any) -> None:
    """Airflow's branching: the branch not taken is skipped and the join after both branches uses
    ``none_failed_min_one_success`` so that it runs ("all upstream tasks have not failed or
    upstream_failed, and at least one upstream task has succeeded"; AIRFLOW_RULES and
    https://airflow.apache.org/docs/apache-airflow/stable/core-concepts/dags.html#branching)."""
    spec = """
workflow: branching
phases:
  flow:
    jobs:
      branch: {}
      branch_a: {after: [branch], when: "results.branch.take == 'a'"}
      branch_b: {after: [branch], when: "results.branch.take == 'b'"}
      join: {after: [branch_a, branch_b], join: none_failed_min_one_success}
"""
    run = peer(spec, fakes={"branch": {"take": "a"}})
    run.start()
    run.assert_run(
        "succeeded",
        jobs={"branch": "succeeded", "branch_a": "succeeded", "branch_b": "skipped", "join": "succeeded"},
    )


def test_airflow_none_failed_min_one_success_after_a_failure_is_upstream_failed_and_fails_the_run(
    peer: Any,
) -> None:
    """Airflow's ``none_failed_min_one_success`` after a failed branch: the failure is not treated
    like a skip: the join is ``upstream_failed`` and the DAG run fails (AIRFLOW_RULES)."""
    spec = """
workflow: branching
phases:
  flow:
    jobs:
      branch: {}
      branch_a: {after: [branch], retries: 0}
      branch_b: {after: [branch], when: "results.branch.take == 'b'"}
      join: {after: [branch_a, branch_b], join: none_failed_min_one_success}
"""
    run = peer(spec, fakes={"branch": {"take": "a"}, "branch_a": raises(RuntimeError("boom"))})
    run.start()
    run.assert_run(
        "failed",
        jobs={"branch": "succeeded", "branch_a": "failed", "branch_b": "skipped", "join": "upstream_failed"},
    )


def test_airflow_one_failed_and_all_failed_run_on_failures_only(peer: Any) -> None:
    """Airflow's ``one_failed`` ("at least one upstream task has failed", without waiting) and
    ``all_failed`` ("all upstream tasks are in a failed or upstream_failed state"); when nothing
    failed they are skipped (AIRFLOW_RULES)."""
    spec = """
workflow: alerts
phases:
  flow:
    jobs:
      a: {retries: 0}
      b: {retries: 0}
      alert: {after: [a, b], join: one_failed}
      give_up: {after: [a, b], join: all_failed}
"""
    run = peer(spec, fakes={"a": raises(OSError("a"))})
    run.start()
    run.assert_run(
        "succeeded", jobs={"a": "failed", "b": "succeeded", "alert": "succeeded", "give_up": "skipped"}
    )

    both = peer(spec, fakes={"a": raises(OSError("a")), "b": raises(OSError("b"))})
    both.start()
    both.assert_run(
        "succeeded", jobs={"a": "failed", "b": "failed", "alert": "succeeded", "give_up": "succeeded"}
    )

    fine = peer(spec)
    fine.start()
    fine.assert_run(
        "succeeded", jobs={"a": "succeeded", "b": "succeeded", "alert": "skipped", "give_up": "skipped"}
    )


# -- what the outputs say about joins and caught failures ----------------------------------------


def test_every_output_tells_upstream_failed_and_a_caught_failure_apart(peer: Any) -> None:
    """status --json, the run's summary, the end-of-run message, the graph and the console all
    name the new state and the join, not ``skipped``."""
    spec = """
workflow: outputs
phases:
  p:
    jobs:
      a: {retries: 0}
      b: {after: [a]}
      cleanup: {after: [b], join: all_done}
"""
    run = peer(spec, fakes={"a": raises(OSError("disk"))})
    run.start()
    run.assert_run("succeeded", jobs={"a": "failed", "b": "upstream_failed", "cleanup": "succeeded"})
    report = run.get()
    document = report.to_json()
    assert document["jobs"]["b"]["status"] == "upstream_failed"
    assert document["caught"] == ["a"]
    assert report.job("a").caught
    assert not report.job("a").tolerated

    out = io.StringIO()
    print_summary(Console(file=out, width=120, highlight=False, color_system=None), report)
    assert "upstream_failed" in out.getvalue()
    assert "failed and caught by a join after it: a" in out.getvalue()

    graph = render_mermaid(run.definition)
    assert "job_b --o job_cleanup" in graph
    assert "join all_done" in graph
    assert "arrowhead=odot" in render_dot(run.definition)
    depends = render_mermaid(peer(DEPENDS).definition)
    assert "depends jobs.A.state == 'succeeded' || jobs.B.state == 'failed'" in depends
    assert "job_B --o job_C" in depends

    run_document = run._store.read_run(report.run_id)
    assert run_document is not None
    phase = run_json(run_document, [], allow_actions=False)["phases"][0]
    assert {job["name"]: (job["state"], job["join"]) for job in phase["jobs"]} == {
        "a": ("failed", "all"),
        "b": ("upstream_failed", "all"),
        "cleanup": ("succeeded", "all_done"),
    }
