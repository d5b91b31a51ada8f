"""A job's ``rate_limit`` across runs on the local engine: a fan-out of 1,000 items whose job may
start 20 attempts a second (the payment API of the README), run by the local runner with stub
jobs. The limit counts attempts as they are dispatched, so the figure it is held to comes from
the attempts' tickets (each granted attempt's ``grantedAt``, the instant it was dispatched),
counted in the one-second window it falls in (windows counted from the epoch, as the limit
counts them): the most in any window (at most 20) and the mean over the windows in which work
was still waiting (every window from the first to the one before the last, whose dispatches are
the remainder): the share of the limit the waiting work got. Beside it, from the statuses log,
the same count of each attempt's ``started`` report: what the API sees, an invocation after the
dispatch, so a dispatch late in a window may report its start in the next. Beside them, the same fan-out
without the limit: the starts a second the local engine itself sustains on this machine, which
the limited run cannot exceed whatever the limit."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import pymongo

from benchmarks.fan_out import _Quiet
from benchmarks.orchestration import Progress, scratch_databases
from cdk_app.local.runner import LocalRunner, RunOptions
from runtime.definition.loader import workflow_from_document
from runtime.definition.model import Workflow
from runtime.documents.job_limits import GRANTED_AT, JOB, KIND, RUN_ID, TICKET_KIND
from runtime.store.mongo import MongoStore
from runtime.store.settings import StoreSettings

Document = dict[str, Any]

ITEMS = 1_000
RATE = 20
"""Attempts a second the payment API takes."""


def payment_workflow(rate: int | None) -> Workflow:
    """One job charging each customer of its input, at most ``rate`` a second (None: no limit)."""
    limit = {} if rate is None else {"rate_limit": {"limit": rate, "period": 1}}
    spec = {
        "workflow": "payments",
        "phases": {
            "charge": {
                "jobs": {
                    "charge_card": {
                        "for_each": "input.customers",
                        "max_concurrency": 100,
                        **limit,
                    }
                }
            }
        },
    }
    return workflow_from_document(spec, source="<bench>")


def per_second(instants: list[datetime]) -> list[int]:
    """How many of ``instants`` fall in each one-second window, first to last (gaps as 0)."""
    counts: dict[int, int] = {}
    for instant in instants:
        window = int(instant.timestamp())
        counts[window] = counts.get(window, 0) + 1
    first, last = min(counts), max(counts)
    return [counts.get(window, 0) for window in range(first, last + 1)]


def starts_per_second(store: MongoStore, run_id: str, job: str) -> list[int]:
    """Attempts of ``job`` whose ``started`` report falls in each one-second window."""
    return per_second(
        [
            status["date"]
            for status in store.run_statuses(run_id)
            if status.get("job") == job and status["status"] == "started"
        ]
    )


def dispatches_per_second(store: MongoStore, run_id: str, job: str) -> list[int]:
    """Attempts of ``job`` dispatched in each one-second window: their tickets' grant instants."""
    tickets = store.database[store.settings.slots_collection].find(
        {KIND: TICKET_KIND, RUN_ID: run_id, JOB: job, GRANTED_AT: {"$exists": True}}, {GRANTED_AT: 1}
    )
    return per_second([ticket[GRANTED_AT] for ticket in tickets])


def local_fan_out(uri: str, items: int, rate: int | None) -> tuple[float, list[int], list[int]]:
    """A local run of the fan-out: its wall seconds, its dispatches in each second (none without
    a limit, which makes no tickets) and its starts in each second."""
    client: pymongo.MongoClient[Document] = pymongo.MongoClient(uri, tz_aware=True)
    try:
        with scratch_databases(uri, "job_limits") as (database,):
            store = MongoStore(client, StoreSettings(database=database))
            handlers = {"charge_card": lambda event, context: {"charged": event["item"]}}
            started = time.perf_counter()
            runner = LocalRunner(store, payment_workflow(rate), handlers, _Quiet(), RunOptions(timeout=600))
            report = runner.run(run_input={"customers": [f"customer-{index:04d}" for index in range(items)]})
            seconds = time.perf_counter() - started
            assert report.status == "succeeded", report.error
            dispatches = [] if rate is None else dispatches_per_second(store, report.run_id, "charge_card")
            return seconds, dispatches, starts_per_second(store, report.run_id, "charge_card")
    finally:
        client.close()


def rate_limited_fan_out(
    uri: str, progress: Progress, items: int = ITEMS, rate: int = RATE
) -> dict[str, Any]:
    progress(f"job limits: a local fan-out of {items:,} items without a limit (the engine's own pace)")
    free_seconds, _, free = local_fan_out(uri, items, None)
    progress(f"job limits: a local fan-out of {items:,} items under rate_limit {rate}/s")
    seconds, windows, starts = local_fan_out(uri, items, rate)
    waiting = windows[:-1] or windows
    mean = sum(waiting) / len(waiting)
    unlimited = free[:-1] or free
    return {
        "rate_limit_fan_out": {
            "items": items,
            "limit_per_second": rate,
            "seconds": round(seconds, 1),
            "windows": len(windows),
            "dispatches_per_window": windows,
            "dispatches_per_window_max": max(windows),
            "dispatches_per_window_mean_while_waiting": round(mean, 2),
            "starts_per_window": starts,
            "starts_per_window_max": max(starts),
            "unlimited_seconds": round(free_seconds, 1),
            "unlimited_starts_per_second_mean": round(sum(unlimited) / len(unlimited), 2),
        },
        "rate_limit_max_per_window": max(windows),
        "rate_limit_share_while_waiting": round(mean / rate, 3),
    }
