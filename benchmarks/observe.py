"""What tracing and metrics cost per job attempt: the same runs (one phase of independent jobs,
through the test kit: the real orchestrator, job wrapper and store) three ways. ``off``: the
telemetry hooks replaced by plain calls (what the code did before them); ``metrics``: the hooks
as shipped, metrics built and serialized as EMF lines into a sink, OpenTelemetry installed but no
exporter configured; ``exporter``: the same with the SDK's tracer provider and an in-memory
exporter (every span built and exported). MongoDB commands are counted by a command listener;
the telemetry must add none."""

from __future__ import annotations

import json
import logging
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pymongo import monitoring

from benchmarks.fan_out import ByteCounter
from benchmarks.orchestration import Progress
from cdk_app.testkit import WorkflowTest
from runtime.aws import metrics, telemetry, tracing
from runtime.definition.model import Job, Phase, Workflow
from runtime.documents.events import JobEvent
from runtime.service import job_attempt

JOBS = 20
WORKFLOW = Workflow(
    name="observed",
    phases=(
        Phase(name="work", jobs=tuple(Job(name=f"job_{number}", phase="work") for number in range(JOBS))),
    ),
)


@contextmanager
def _telemetry_off() -> Iterator[None]:
    """The hooks as plain calls: the user's handler called directly, no decision observer."""
    observed, observer = job_attempt.observed_call, telemetry._observe_decision
    job_attempt.observed_call = lambda event, handler, payload, context: handler(payload, context)
    telemetry._observe_decision = lambda run, event, transition: None
    try:
        yield
    finally:
        job_attempt.observed_call = observed
        telemetry._observe_decision = observer


def _runs(uri: str, runs: int, counter: ByteCounter) -> tuple[float, int]:
    """Wall seconds and MongoDB commands of ``runs`` runs (each in a database of its own,
    opened and dropped outside the measure)."""
    wall, commands = 0.0, 0
    fakes = {job.name: {"ok": True} for job in WORKFLOW.jobs()}
    for _ in range(runs):
        test = WorkflowTest(WORKFLOW, uri, fakes=fakes)
        try:
            counter.take()
            began = time.perf_counter()
            test.start({})
            test.run_until_idle()
            wall += time.perf_counter() - began
            commands += counter.take()[0]
            if test.get().status != "succeeded":
                raise RuntimeError("the observed workflow did not succeed")
        finally:
            test.close()
    return wall, commands


CALLS = 5_000


def _wrapper_us(direct: bool) -> float:
    """Microseconds one attempt's wrapping costs on its own (a handler that does nothing), the
    median of five rounds: the part of the wall time above that the database's noise hides."""
    event = JobEvent(run_id="observed-run", workflow=WORKFLOW.name, phase="work", job="job_0", attempt=2)
    rounds = []
    for _ in range(5):
        began = time.perf_counter()
        for _ in range(CALLS):
            if direct:
                _handler({}, None)
            else:
                telemetry.observed_call(event, _handler, {}, None)
        rounds.append((time.perf_counter() - began) * 1_000_000 / CALLS)
    return round(statistics.median(rounds), 2)


def _handler(payload: dict[str, Any], context: Any) -> Any:
    return None


def telemetry_cost(uri: str, runs: int, progress: Progress) -> dict[str, Any]:
    logging.getLogger("runtime").setLevel(logging.WARNING)
    counter = ByteCounter()
    monitoring.register(counter)
    lines: list[str] = []

    def sink(record: dict[str, Any]) -> None:
        lines.append(json.dumps(record))

    attempts = runs * JOBS
    figures: dict[str, dict[str, float]] = {}
    _runs(uri, 1, counter)  # warm up: imports, the server's first collections
    wrapper: dict[str, float] = {}
    for mode in ("off", "metrics", "exporter"):
        if mode == "off":
            wrapper[mode] = _wrapper_us(direct=True)
            with _telemetry_off():
                wall, commands = _runs(uri, runs, counter)
        else:
            if mode == "exporter":
                from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

                tracing.configure(InMemorySpanExporter())
            metrics.add_sink(sink)
            try:
                wrapper[mode] = _wrapper_us(direct=False)
                wall, commands = _runs(uri, runs, counter)
            finally:
                metrics.remove_sink(sink)
        figures[mode] = {
            "wall_ms_per_attempt": round(wall * 1000 / attempts, 3),
            "mongodb_commands_per_attempt": round(commands / attempts, 3),
            "wrapper_us_per_attempt": wrapper[mode],
        }
        progress(
            f"telemetry {mode}: {figures[mode]['wall_ms_per_attempt']} ms and "
            f"{figures[mode]['mongodb_commands_per_attempt']} MongoDB commands per attempt; the "
            f"wrapper alone {wrapper[mode]} us"
        )
    off = figures["off"]
    return {
        "telemetry_cost": {
            "runs": runs,
            "attempts_per_run": JOBS,
            "modes": figures,
            "emf_lines": len(lines),
            "median_emf_line_bytes": statistics.median(len(line) for line in lines) if lines else 0,
        },
        "telemetry_commands_added_per_attempt": round(
            max(figures[mode]["mongodb_commands_per_attempt"] for mode in ("metrics", "exporter"))
            - off["mongodb_commands_per_attempt"],
            3,
        ),
        "telemetry_ms_added_per_attempt": {
            mode: round(figures[mode]["wall_ms_per_attempt"] - off["wall_ms_per_attempt"], 3)
            for mode in ("metrics", "exporter")
        },
    }
