"""A run as one OpenTelemetry trace (docs/observability.md): run, phases, one span per job
attempt under its phase, the user's own spans under their attempt, the W3C ``traceparent`` of the
attempt in the job's event. Run through the test kit (the real orchestrator, job wrapper and
store) with the SDK's in-memory exporter."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from cdk_app.testkit import WorkflowTest, raises, sequence
from runtime.aws import tracing
from runtime.definition.model import Job, Phase, Workflow
from runtime.documents import traces

ROOT = Path(__file__).resolve().parents[1]
SPEC = "tests/specs/observe/traced.yaml"


@pytest.fixture(scope="module")
def exporter() -> InMemorySpanExporter:
    memory = InMemorySpanExporter()
    tracing.configure(memory)
    return memory


@pytest.fixture
def spans(exporter: InMemorySpanExporter) -> Iterator[InMemorySpanExporter]:
    exporter.clear()
    yield exporter
    exporter.clear()


def _in_user_span(name: str, output: Any) -> Any:
    def handler(event: dict[str, Any]) -> Any:
        with trace.get_tracer("user-code").start_as_current_span(name):
            return output

    return handler


def _hex(value: int, digits: int) -> str:
    return f"{value:0{digits}x}"


def _parent(span: ReadableSpan) -> str | None:
    return None if span.parent is None else _hex(span.parent.span_id, 16)


def _attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def _key(span: ReadableSpan) -> tuple[str, int | None, int]:
    """An attempt span's job, item index and attempt."""
    attributes = _attrs(span)
    return attributes["workflow.job"], attributes.get("workflow.item_index"), attributes["workflow.attempt"]


def _id(span: ReadableSpan) -> str:
    assert span.context is not None
    return _hex(span.context.span_id, 16)


def test_a_run_is_one_trace_with_a_span_per_attempt_under_its_phase(
    spans: InMemorySpanExporter, mongo_uri: str
) -> None:
    test = WorkflowTest(
        SPEC,
        mongo_uri,
        fakes={
            "flaky": sequence(raises(ConnectionError("down")), _in_user_span("call the warehouse", {"n": 2})),
            "fan": _in_user_span("one item", "ok"),
            "broken": raises(ValueError("bad data")),
            "cleanup": {"cleaned": True},
        },
    )
    try:
        run_id = test.start({"items": ["a", "b"]}).run_id
        test.run_until_idle()
        test.assert_run("failed", jobs={"flaky": "succeeded", "fan": "succeeded", "broken": "failed"})
        events = test.calls
    finally:
        test.close()
    finished = spans.get_finished_spans()
    trace_id = traces.trace_id(run_id)
    assert {_hex(span.context.trace_id, 32) for span in finished if span.context} == {trace_id}

    by_name: dict[str, list[ReadableSpan]] = {}
    for span in finished:
        by_name.setdefault(span.name, []).append(span)
    (root,) = by_name["run traced"]
    assert root.parent is None
    assert _id(root) == traces.run_span_id(run_id)
    assert root.status.status_code == StatusCode.ERROR
    assert root.attributes is not None
    assert root.attributes["workflow.outcome"] == "failed"

    phases = {_attrs(span)["workflow.phase"]: span for span in finished if span.name.startswith("phase ")}
    assert set(phases) == {"prepare", "finish", "on_failure"}
    for phase, span in phases.items():
        assert _id(span) == traces.phase_span_id(run_id, phase)
        assert _parent(span) == _id(root)

    attempts = {
        (
            _attrs(span)["workflow.job"],
            _attrs(span).get("workflow.item_index"),
            _attrs(span)["workflow.attempt"],
        ): span
        for span in finished
        if "workflow.attempt" in _attrs(span)
    }
    expected_phase = {"flaky": "prepare", "fan": "prepare", "broken": "finish", "cleanup": "on_failure"}
    assert sorted(attempts, key=str) == sorted(
        [
            ("flaky", None, 1),
            ("flaky", None, 2),
            ("fan", 0, 1),
            ("fan", 1, 1),
            ("broken", None, 1),
            ("cleanup", None, 1),
        ],
        key=str,
    )
    for (job, index, attempt), span in attempts.items():
        assert _parent(span) == traces.phase_span_id(run_id, expected_phase[job])
        assert _id(span) == traces.attempt_span_id(run_id, job, attempt, index)
        assert _attrs(span)["workflow.run_id"] == run_id
        assert _attrs(span)["workflow.name"] == "traced"
    first_try = attempts[("flaky", None, 1)]
    assert first_try.status.status_code == StatusCode.ERROR
    assert _attrs(first_try)["workflow.outcome"] == "failed"
    assert [event.name for event in first_try.events] == ["exception"]
    assert attempts[("flaky", None, 2)].status.status_code == StatusCode.OK
    assert attempts[("broken", None, 1)].status.status_code == StatusCode.ERROR
    assert _attrs(attempts[("cleanup", None, 1)])["workflow.outcome"] == "success"

    # The user's own spans: under the attempt that ran them.
    (warehouse,) = by_name["call the warehouse"]
    assert _parent(warehouse) == _id(attempts[("flaky", None, 2)])
    items = by_name["one item"]
    assert sorted(str(_parent(span)) for span in items) == sorted(
        traces.attempt_span_id(run_id, "fan", 1, index) for index in (0, 1)
    )

    # The job event carries the attempt's traceparent.
    (first, second) = events["flaky"]
    assert first["traceparent"] == f"00-{trace_id}-{traces.attempt_span_id(run_id, 'flaky', 1)}-01"
    assert second["traceparent"] == traces.attempt_traceparent(run_id, "flaky", 2)


def test_an_attempt_runs_without_opentelemetry_installed() -> None:
    # The Lambda layer does not bundle OpenTelemetry: the wrapper must not need it.
    code = (
        "import sys\n"
        "sys.modules['opentelemetry'] = None\n"
        "from runtime.aws import tracing\n"
        "from runtime.aws.telemetry import observed_call\n"
        "from runtime.documents.events import JobEvent\n"
        "event = JobEvent(run_id='r-1', workflow='w', phase='p', job='j', attempt=2)\n"
        "print(observed_call(event, lambda payload, context: payload['x'] * 2, {'x': 21}, None))\n"
        "print(tracing.available(), event.to_payload()['traceparent'])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.splitlines() == ["42", f"False {traces.attempt_traceparent('r-1', 'j', 2)}"]


def test_a_wait_is_a_span_under_its_phase_and_phase_ends_are_events_of_the_run(
    spans: InMemorySpanExporter, mongo_uri: str
) -> None:
    paused = Workflow(
        name="paused",
        phases=(
            Phase(
                name="p",
                jobs=(
                    Job(name="pause", phase="p", wait=3600),
                    Job(name="go", phase="p", after=("pause",)),
                ),
            ),
        ),
    )
    test = WorkflowTest(paused, mongo_uri, fakes={"go": "went"})
    try:
        run_id = test.start().run_id
        test.run_until_idle()
        test.assert_run("succeeded")
    finally:
        test.close()
    finished = {span.name: span for span in spans.get_finished_spans()}
    wait = finished["wait pause"]
    assert _parent(wait) == traces.phase_span_id(run_id, "p")
    assert wait.end_time is not None
    assert wait.start_time is not None
    assert (wait.end_time - wait.start_time) // 1_000_000_000 == 3600
    run = finished["run paused"]
    assert [event.name for event in run.events] == ["phase p ended", "workflow_succeeded"]
    assert _parent(finished["go"]) == traces.phase_span_id(run_id, "p")
