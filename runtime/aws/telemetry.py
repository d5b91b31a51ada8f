"""What the functions that already run tell about a run, at no extra call: the job wrapper
around the user's code (``observed_call``: the attempt's span, log fields and metrics) and the
orchestrator after each decision it wrote (``observe_decision``: runs started and ended, their
duration, and at a run's end the spans of the run and its phases). Nothing here reads or writes
MongoDB; metrics go to ``runtime.aws.metrics``' sinks, spans to OpenTelemetry when installed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from runtime.aws import metrics, tracing
from runtime.aws.logs import log_context, use_json_logs
from runtime.clock import as_utc, utcnow
from runtime.definition.model import HANDLERS_PHASE
from runtime.documents import traces
from runtime.documents.events import JobEvent
from runtime.documents.run import Run, StatusEvent
from runtime.engine.transition import Transition
from runtime.statuses import StatusName

log = logging.getLogger(__name__)

RUN_ENDS = {
    StatusName.WORKFLOW_SUCCEEDED: (metrics.RUNS_SUCCEEDED, "succeeded"),
    StatusName.WORKFLOW_FAILED: (metrics.RUNS_FAILED, "failed"),
    StatusName.WORKFLOW_CANCELLED: (metrics.RUNS_CANCELLED, "cancelled"),
}
"""The run statuses that end a run: the metric each counts in, and the outcome it names."""


LAMBDA_FUNCTION_NAME = "AWS_LAMBDA_FUNCTION_NAME"
"""Set by Lambda's runtime in every function: where log lines are JSON and metrics are printed."""


def setup_function(environ: Mapping[str, str]) -> None:
    """Once per process, in a Lambda function: JSON log lines, metrics printed as EMF lines, and
    traces exported over OTLP when OpenTelemetry's endpoint is configured (and its packages
    installed). Elsewhere (tests, the local cloud) the caller chooses its own sinks."""
    if environ.get(LAMBDA_FUNCTION_NAME):
        use_json_logs()
        metrics.add_sink(metrics.print_line)
    tracing.configure_from_env(environ)


def attempt_attributes(event: JobEvent) -> dict[str, Any]:
    """The attempt span's attributes (OpenTelemetry's: strings, numbers, no None)."""
    attributes: dict[str, Any] = {
        "workflow.name": event.workflow,
        "workflow.run_id": event.run_id,
        "workflow.phase": event.phase,
        "workflow.job": event.job,
        "workflow.attempt": event.attempt,
    }
    if event.index is not None:
        attributes["workflow.item_index"] = event.index
    return attributes


def observed_call(
    event: JobEvent, handler: Callable[[dict[str, Any], Any], Any], payload: dict[str, Any], context: Any
) -> Any:
    """Call the user's handler as the attempt: inside its span (the current one, so the user's
    spans nest under it), with its log fields, then count its outcome and duration."""
    with log_context(
        workflow=event.workflow,
        run_id=event.run_id,
        phase=event.phase,
        job=event.job,
        attempt=event.attempt,
        index=event.index,
    ):
        started = time.perf_counter()
        with tracing.attempt_span(
            run_id=event.run_id,
            phase=event.phase,
            job=event.job,
            attempt=event.attempt,
            index=event.index,
            attributes=attempt_attributes(event),
        ) as span:
            try:
                output = handler(payload, context)
            except Exception as exc:  # re-raised: the job wrapper reports the failure
                tracing.finish(span, "failed", exc)
                _count_attempt(event, metrics.ATTEMPTS_FAILED, started)
                raise
            tracing.finish(span, "success")
            _count_attempt(event, metrics.ATTEMPTS_SUCCEEDED, started)
            return output


def _count_attempt(event: JobEvent, outcome: metrics.Metric, started: float) -> None:
    values: dict[str, float] = {
        outcome.name: 1,
        metrics.ATTEMPT_DURATION.name: round((time.perf_counter() - started) * 1000, 3),
    }
    if event.attempt > 1:
        values[metrics.RETRIES.name] = 1
    record = metrics.embedded_metrics(
        event.workflow,
        values,
        utcnow(),
        job=event.job,
        runId=event.run_id,
        attempt=event.attempt,
        traceId=traces.trace_id(event.run_id),
    )
    metrics.emit(record)


def observe_decision(run: Run, event: StatusEvent, transition: Transition) -> None:
    """After the orchestrator wrote ``transition`` (decided on ``run``, for ``event``): count a
    run's start and end, and write the run's spans when it ended. A decision is written once
    (guarded by the run's version), so each is counted once; one that a crash kept from getting
    here is not counted. Best effort: a failure here is logged, never the decision's."""
    try:
        _observe_decision(run, event, transition)
    except Exception:  # telemetry must not fail the handling of an event
        log.exception("could not record the metrics and spans of %s in run %r", event.key, run.run_id)


def _observe_decision(run: Run, event: StatusEvent, transition: Transition) -> None:
    now = utcnow()
    if event.status == StatusName.WORKFLOW_STARTED:
        metrics.emit(
            metrics.embedded_metrics(
                run.workflow,
                {metrics.RUNS_STARTED.name: 1},
                now,
                runId=run.run_id,
                traceId=traces.trace_id(run.run_id),
            )
        )
    for status in transition.statuses:
        end = RUN_ENDS.get(status.status)
        if end is None:
            continue
        metric, outcome = end
        values: dict[str, float] = {metric.name: 1}
        started = as_utc(run.created_at)
        if started is not None:
            values[metrics.RUN_DURATION.name] = round((now - started).total_seconds(), 3)
        metrics.emit(
            metrics.embedded_metrics(
                run.workflow, values, now, runId=run.run_id, traceId=traces.trace_id(run.run_id)
            )
        )
        write_run_spans(run, outcome, status.error, now)


def observe_queue_wait(run: Run) -> None:
    """The queued ``run`` just started (its guarded ``queued`` to ``running`` write succeeded,
    once per run): how long it waited since it was started. Best effort, as ``observe_decision``."""
    try:
        queued = as_utc(run.created_at)
        if queued is None:
            return
        now = utcnow()
        values = {metrics.QUEUE_WAIT.name: round(max(0.0, (now - queued).total_seconds()), 3)}
        metrics.emit(
            metrics.embedded_metrics(
                run.workflow, values, now, runId=run.run_id, traceId=traces.trace_id(run.run_id)
            )
        )
    except Exception:  # telemetry must not fail a run's start
        log.exception("could not record the queue wait of run %r", run.run_id)


def observe_timer_fired(event: StatusEvent, due: datetime, now: datetime) -> None:
    """The timer ``event`` (due at ``due``) fired at ``now``: its ``timer_fired`` status was new,
    so each timer is counted once however many sweeps see it due. Best effort."""
    try:
        values = {metrics.TIMER_LATENESS.name: round(max(0.0, (now - _aware(due)).total_seconds()), 3)}
        metrics.emit(
            metrics.embedded_metrics(
                event.workflow,
                values,
                now,
                runId=event.run_id,
                timer=event.key,
                traceId=traces.trace_id(event.run_id),
            )
        )
    except Exception:  # telemetry must not fail a sweep
        log.exception("could not record the lateness of timer %s of run %r", event.key, event.run_id)


def _aware(moment: datetime) -> datetime:
    """A stored time as UTC: a store read without ``tz_aware`` gives naive ones."""
    return as_utc(moment) or moment


def write_run_spans(run: Run, outcome: str, error: str | None, now: datetime) -> None:
    """The run's span, one per phase its jobs were dispatched in and one per wait or approval
    (no code runs for them, so no attempt span), from the run document's times: a phase from its
    jobs' first dispatch to their last end (the phase the run ends in, to now), with an event
    where it ended."""
    if not tracing.available():
        return
    start = as_utc(run.created_at) or now
    phase_ends: list[tuple[str, datetime, dict[str, Any]]] = []
    for phase in run.definition.all_phases():
        records = {job.name: record for job in phase.jobs if (record := run.jobs.get(job.name)) is not None}
        claimed = [_aware(record.claimed_at) for record in records.values() if record.claimed_at]
        if not claimed:
            continue
        finished = [_aware(record.finished_at) for record in records.values() if record.finished_at]
        phase_end = now if phase.name == run.phase or not finished else max(finished)
        phase_ends.append((f"phase {phase.name} ended", phase_end, {"workflow.phase": phase.name}))
        attributes = {
            "workflow.name": run.workflow,
            "workflow.run_id": run.run_id,
            "workflow.phase": phase.name,
        }
        tracing.write_span(
            run_id=run.run_id,
            span_id=traces.phase_span_id(run.run_id, phase.name),
            parent_id=traces.run_span_id(run.run_id),
            name=f"phase {phase.name}",
            start=min(claimed),
            end=phase_end,
            attributes=attributes | {"workflow.failure_handlers": phase.name == HANDLERS_PHASE},
        )
        for job in phase.jobs:
            record = records.get(job.name)
            if job.runs_code or record is None or record.claimed_at is None:
                continue
            kind = (
                "approval"
                if job.approval is not None
                else "wait"
                if job.child_workflow is None
                else "workflow"
            )
            tracing.write_span(
                run_id=run.run_id,
                span_id=traces.attempt_span_id(run.run_id, job.name, max(record.attempt, 1)),
                parent_id=traces.phase_span_id(run.run_id, phase.name),
                name=f"{kind} {job.name}",
                start=_aware(record.claimed_at),
                end=_aware(record.finished_at) if record.finished_at else now,
                attributes=attributes | {"workflow.job": job.name, "workflow.kind": kind},
            )
    tracing.write_span(
        run_id=run.run_id,
        span_id=traces.run_span_id(run.run_id),
        parent_id=None,
        name=f"run {run.workflow}",
        start=start,
        end=now,
        attributes={
            "workflow.name": run.workflow,
            "workflow.run_id": run.run_id,
            "workflow.outcome": outcome,
            "workflow.redrives": run.redrives,
        },
        error=None if outcome == "succeeded" else (error or outcome),
        events=(
            *sorted(phase_ends, key=lambda event: event[1]),
            (f"workflow_{outcome}", now, {"error": error or ""}),
        ),
    )
