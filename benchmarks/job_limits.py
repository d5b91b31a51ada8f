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
the limited run cannot exceed whatever the limit; the MongoDB commands each run sent per item
(what the limit adds to the engine's own, on a server that answers so many a second); and a
smaller fan-out under a limit the engine outpaces (5 a second), whose share of its limit while
work waited is the limiter's alone."""

from __future__ import annotations

import threading
import time
from datetime import datetime
from typing import Any

import pymongo
from pymongo import monitoring

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
BELOW_ITEMS, BELOW_RATE = 200, 5
"""The fan-out under a limit the local engine outpaces even on a loaded machine."""


class Commands(monitoring.CommandListener):
    """How many commands a client sent."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.sent = 0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        with self._lock:
            self.sent += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        return None

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        return None


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


def local_fan_out(uri: str, items: int, rate: int | None) -> dict[str, Any]:
    """A local run of the fan-out: its wall seconds, its dispatches in each second (none without
    a limit, which makes no tickets), its starts in each second and the commands it sent."""
    commands = Commands()
    client: pymongo.MongoClient[Document] = pymongo.MongoClient(
        uri, tz_aware=True, event_listeners=[commands]
    )
    try:
        with scratch_databases(uri, "job_limits") as (database,):
            store = MongoStore(client, StoreSettings(database=database))
            handlers = {"charge_card": lambda event, context: {"charged": event["item"]}}
            started = time.perf_counter()
            runner = LocalRunner(store, payment_workflow(rate), handlers, _Quiet(), RunOptions(timeout=600))
            report = runner.run(run_input={"customers": [f"customer-{index:04d}" for index in range(items)]})
            seconds = time.perf_counter() - started
            sent = commands.sent
            assert report.status == "succeeded", report.error
            return {
                "seconds": seconds,
                "dispatches": []
                if rate is None
                else dispatches_per_second(store, report.run_id, "charge_card"),
                "starts": starts_per_second(store, report.run_id, "charge_card"),
                "commands_per_item": round(sent / items, 2),
            }
    finally:
        client.close()


def while_waiting(windows: list[int]) -> list[int]:
    """Every window but the last, whose dispatches are the remainder."""
    return windows[:-1] or windows


def rate_limited_fan_out(
    uri: str, progress: Progress, items: int = ITEMS, rate: int = RATE
) -> dict[str, Any]:
    progress(f"job limits: a local fan-out of {items:,} items without a limit (the engine's own pace)")
    free = local_fan_out(uri, items, None)
    progress(f"job limits: a local fan-out of {items:,} items under rate_limit {rate}/s")
    limited = local_fan_out(uri, items, rate)
    below_items = min(items, BELOW_ITEMS)
    progress(f"job limits: a local fan-out of {below_items:,} items under rate_limit {BELOW_RATE}/s")
    below = local_fan_out(uri, below_items, BELOW_RATE)
    windows, below_windows = limited["dispatches"], below["dispatches"]
    mean = sum(while_waiting(windows)) / len(while_waiting(windows))
    below_mean = sum(while_waiting(below_windows)) / len(while_waiting(below_windows))
    unlimited = while_waiting(free["starts"])
    return {
        "rate_limit_fan_out": {
            "items": items,
            "limit_per_second": rate,
            "seconds": round(limited["seconds"], 1),
            "windows": len(windows),
            "dispatches_per_window": windows,
            "dispatches_per_window_max": max(windows),
            "dispatches_per_window_mean_while_waiting": round(mean, 2),
            "starts_per_window": limited["starts"],
            "starts_per_window_max": max(limited["starts"]),
            "commands_per_item": limited["commands_per_item"],
            "unlimited_seconds": round(free["seconds"], 1),
            "unlimited_starts_per_second_mean": round(sum(unlimited) / len(unlimited), 2),
            "unlimited_commands_per_item": free["commands_per_item"],
            "below_engine_pace": {
                "items": below_items,
                "limit_per_second": BELOW_RATE,
                "seconds": round(below["seconds"], 1),
                "dispatches_per_window": below_windows,
                "dispatches_per_window_mean_while_waiting": round(below_mean, 2),
                "commands_per_item": below["commands_per_item"],
            },
        },
        "rate_limit_max_per_window": max(windows),
        "rate_limit_share_while_waiting": round(mean / rate, 3),
        "rate_limit_share_below_engine_pace": round(below_mean / BELOW_RATE, 3),
    }
