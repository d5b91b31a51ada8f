"""The ``<workflow>-reconciler`` function: one reconciler pass over the workflow's runs, on an
EventBridge schedule, and its figures as CloudWatch metrics.

The figures are written in CloudWatch's embedded metric format: one JSON line on standard output,
which CloudWatch Logs turns into metrics. That needs no ``cloudwatch:PutMetricData`` permission
and no extra call on the pass, and unlike a metric filter it does not depend on the wording of a
log line; the stack's alarm watches ``RunsRepaired``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import datetime, timedelta
from typing import Any, TextIO

import boto3

from runtime import contracts
from runtime.aws import metrics, tracing
from runtime.aws.children import LambdaChildStarter
from runtime.aws.dispatch import LambdaDispatcher
from runtime.aws.metrics import embedded_metrics, rejected_metric_line
from runtime.aws.telemetry import setup_function
from runtime.clock import utcnow
from runtime.service.reconciler import Reconciler, ReconcileReport
from runtime.service.timers import fire_timers_until
from runtime.store.connection import store_from_env

log = logging.getLogger(__name__)

STALE_AFTER = timedelta(minutes=5)
"""A running run not written for this long is checked: a legitimate run writes whenever an
attempt ends, and checking a healthy run costs two reads."""

METRICS = {
    metrics.RUNS_CHECKED.name: "runs_checked",
    metrics.RUNS_REPAIRED.name: "repaired_runs",
    metrics.STATUSES_APPLIED.name: "statuses_applied",
    metrics.ATTEMPTS_REDISPATCHED.name: "redispatched",
    metrics.SLOTS_RELEASED.name: "slots_released",
    metrics.QUEUED_RUNS_STARTED.name: "queued_started",
}
"""Metric name -> the ``ReconcileReport`` field it reports (a tuple reports its length)."""


def metrics_record(workflow: str, report: ReconcileReport, now: datetime) -> dict[str, Any]:
    """The embedded-metric-format record of one pass."""
    values = {}
    for metric, attribute in METRICS.items():
        value = getattr(report, attribute)
        values[metric] = len(value) if isinstance(value, tuple) else value
    return embedded_metrics(workflow, values, now, repairedRuns=list(report.repaired_runs))


def reconcile_and_report(reconciler: Reconciler, workflow: str, out: TextIO | None = None) -> ReconcileReport:
    """One pass, its metrics record written as one line to ``out`` (standard output)."""
    now = utcnow()
    report = reconciler.reconcile_pass(now)
    stream = out or sys.stdout
    stream.write(json.dumps(metrics_record(workflow, report, now)) + "\n")
    stream.flush()
    return report


STORE_CONNECTIONS = 1
"""A pass (or the timers' minute) runs on one thread."""

_state: dict[str, Reconciler] = {}


def _build(workflow: str) -> Reconciler:
    setup_function(os.environ)
    store = store_from_env(
        os.environ, max_pool_size=STORE_CONNECTIONS, create_indexes=True, workflow=workflow, keyed=True
    )
    # Runs in flight across the deploy that brought the views: their jobs read what they wrote.
    store.adopt_running_runs(workflow)
    client = boto3.client("lambda")
    return Reconciler(
        store=store,
        dispatcher=LambdaDispatcher(client),
        children=LambdaChildStarter(client),
        stale_after=STALE_AFTER,
        workflow=workflow,
        on_rejected=lambda status, reason: print(rejected_metric_line(status.workflow), flush=True),
    )


TIMER_WINDOW = timedelta(seconds=55)
"""How long one invocation of the timer schedule (every minute) keeps firing timers as they come
due; the next minute's invocation takes over."""


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    """Lambda entry point: the reconcile schedule's target (the event is not read), and the timer
    schedule's (``{"action": "fire_timers"}``), which fires due timers for a minute."""
    workflow = os.environ[contracts.WORKFLOW_NAME]
    if "reconciler" not in _state:
        _state["reconciler"] = _build(workflow)
    try:
        if isinstance(event, dict) and event.get("action") == contracts.FIRE_TIMERS:
            reconciler: Reconciler = _state["reconciler"]
            fired = fire_timers_until(
                reconciler.store, workflow, utcnow() + TIMER_WINDOW, invoke=reconciler.invoke
            )
            return {"timers_fired": fired}
        # A pass applies missed statuses, and the one that ends a run writes the run's spans.
        report = reconcile_and_report(_state["reconciler"], workflow)
    finally:
        tracing.flush()
    return {
        "runs_checked": report.runs_checked,
        "statuses_applied": report.statuses_applied,
        "redispatched": report.redispatched,
        "repaired_runs": list(report.repaired_runs),
        "slots_released": report.slots_released,
        "queued_started": report.queued_started,
    }
