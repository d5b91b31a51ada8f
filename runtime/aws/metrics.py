"""CloudWatch metrics as embedded metric format lines: a function prints one JSON line and
CloudWatch Logs turns it into a data point, with no call to CloudWatch on the way.

``CATALOG`` is every metric the functions emit, with its unit and whether it is also kept per
job; the dashboard and the alarms (``constructs.observability``) and the dev server's
``/metrics`` read the same table, and a test holds the dashboard to what the functions print.
Records go to the sinks registered with ``add_sink``: the Lambda handlers register standard
output, the dev server its Prometheus registry; with none, building a record is all it costs.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from runtime import contracts
from runtime.clock import utcnow

NAMESPACE = contracts.RECONCILER_METRICS_NAMESPACE
WORKFLOW, JOB = "Workflow", "Job"
"""The dimensions: every metric has ``Workflow``; a per-job one also ``Workflow, Job``."""


@dataclass(frozen=True)
class Metric:
    name: str
    unit: str
    per_job: bool = False
    """Also kept per job (dimensions ``Workflow, Job``), beside the workflow's total."""
    help: str = ""


RUNS_STARTED = Metric("RunsStarted", "Count", help="Runs whose first event the orchestrator applied.")
RUNS_SUCCEEDED = Metric("RunsSucceeded", "Count", help="Runs that ended succeeded.")
RUNS_FAILED = Metric("RunsFailed", "Count", help="Runs that ended failed.")
RUNS_CANCELLED = Metric("RunsCancelled", "Count", help="Runs that ended cancelled.")
RUN_DURATION = Metric(
    "RunDuration", "Seconds", help="From a run's start (a queued run's arrival) to its end."
)
ATTEMPTS_SUCCEEDED = Metric(
    "AttemptsSucceeded", "Count", per_job=True, help="Job attempts whose code returned."
)
ATTEMPTS_FAILED = Metric("AttemptsFailed", "Count", per_job=True, help="Job attempts whose code raised.")
ATTEMPT_DURATION = Metric(
    "AttemptDuration", "Milliseconds", per_job=True, help="How long the job's code ran, per attempt."
)
RETRIES = Metric("Retries", "Count", per_job=True, help="Attempts after a job's first.")
REJECTED_STATUSES = Metric(
    contracts.REJECTED_STATUSES_METRIC, "Count", help="Statuses rejected as not authentic."
)
RUNS_CHECKED = Metric("RunsChecked", "Count", help="Runs a reconciler pass looked at.")
RUNS_REPAIRED = Metric("RunsRepaired", "Count", help="Runs a reconciler pass repaired.")
STATUSES_APPLIED = Metric("StatusesApplied", "Count", help="Missed statuses a reconciler pass applied.")
ATTEMPTS_REDISPATCHED = Metric(
    "AttemptsRedispatched", "Count", help="Attempts a reconciler pass dispatched again."
)
SLOTS_RELEASED = Metric(
    "SlotsReleased", "Count", help="Concurrency slots of ended runs a reconciler pass released."
)
QUEUED_RUNS_STARTED = Metric(
    "QueuedRunsStarted", "Count", help="Queued runs a reconciler pass started into free slots."
)
QUEUE_WAIT = Metric(
    "QueueWait", "Seconds", help="How long a queued run waited for a concurrency slot before it started."
)
TIMER_LATENESS = Metric(
    "TimerLateness",
    "Seconds",
    help="How long after its due time a timer fired (a wait, a retry, a timeout, a deadline).",
)

CATALOG: Mapping[str, Metric] = {
    metric.name: metric
    for metric in (
        RUNS_STARTED,
        RUNS_SUCCEEDED,
        RUNS_FAILED,
        RUNS_CANCELLED,
        RUN_DURATION,
        ATTEMPTS_SUCCEEDED,
        ATTEMPTS_FAILED,
        ATTEMPT_DURATION,
        RETRIES,
        REJECTED_STATUSES,
        RUNS_CHECKED,
        RUNS_REPAIRED,
        STATUSES_APPLIED,
        ATTEMPTS_REDISPATCHED,
        SLOTS_RELEASED,
        QUEUED_RUNS_STARTED,
        QUEUE_WAIT,
        TIMER_LATENESS,
    )
}
"""Every metric a function emits, by name."""


def dimension_sets(per_job: bool) -> list[list[str]]:
    return [[WORKFLOW], [WORKFLOW, JOB]] if per_job else [[WORKFLOW]]


def embedded_metrics(
    workflow: str, values: Mapping[str, float], now: datetime, *, job: str | None = None, **fields: Any
) -> dict[str, Any]:
    """An embedded-metric-format record: ``values`` (catalog name -> value) for ``workflow`` (and,
    for per-job metrics, ``job``), in the workflows' namespace, with ``fields`` logged beside them."""
    per_job = job is not None
    for name in values:
        if CATALOG[name].per_job != per_job:
            raise ValueError(f"metric {name!r} is {'' if CATALOG[name].per_job else 'not '}per job")
    return {
        "_aws": {
            "Timestamp": int(now.timestamp() * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": NAMESPACE,
                    "Dimensions": dimension_sets(per_job),
                    "Metrics": [{"Name": name, "Unit": CATALOG[name].unit} for name in values],
                }
            ],
        },
        WORKFLOW: workflow,
        **({JOB: job} if per_job else {}),
        **values,
        **fields,
    }


def rejected_metric_line(workflow: str, now: datetime | None = None) -> str:
    """One ``RejectedStatuses`` data point for ``workflow``: a status the orchestrator did not
    apply because its writer could not be authenticated."""
    return json.dumps(embedded_metrics(workflow, {contracts.REJECTED_STATUSES_METRIC: 1}, now or utcnow()))


MetricsSink = Callable[[dict[str, Any]], None]

_sinks: list[MetricsSink] = []
_lock = threading.Lock()


def add_sink(sink: MetricsSink) -> None:
    """Send every record ``emit`` is given to ``sink`` too (once, however often added)."""
    with _lock:
        if sink not in _sinks:
            _sinks.append(sink)


def remove_sink(sink: MetricsSink) -> None:
    with _lock:
        if sink in _sinks:
            _sinks.remove(sink)


def emit(record: dict[str, Any]) -> None:
    """Hand one record to every sink. A sink that fails is not the run's problem: metrics are
    best effort, the run's own writes are not."""
    for sink in tuple(_sinks):
        try:
            sink(record)
        except Exception:  # noqa: BLE001 - a broken sink must not fail a job or a decision
            continue


def print_line(record: dict[str, Any]) -> None:
    """The Lambda sink: one JSON line on standard output, which CloudWatch Logs reads as EMF."""
    print(json.dumps(record, default=str), flush=True)
