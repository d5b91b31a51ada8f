"""``for_each`` at width: what one item's success costs the orchestrator at 10, 1,000 and 10,000
items (MongoDB commands and the bytes they send and receive, counted by a pymongo command
listener on the orchestrator's own client), the wall time of local runs of 1,000 and 10,000
items against the same count of static jobs where that is possible, and the largest run
document seen.

The cost per item is measured on the item successes of the fan-out's steady state: the status
documents are inserted as the job wrapper would (not counted: that is the job's work), then
handed to one warm orchestrator (its fan-out contexts read once) whose commands are counted.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import bson
import pymongo
from pymongo import monitoring

from benchmarks.orchestration import CONNECTION_COMMANDS, CountingDispatcher, Progress, scratch_databases
from cdk_app.local.atlas_events import envelope
from cdk_app.local.runner import LocalRunner, RunOptions
from runtime.clock import utcnow
from runtime.definition.loader import workflow_from_document
from runtime.definition.model import Workflow
from runtime.documents.run import StatusEvent
from runtime.service.orchestrator import Orchestrator
from runtime.service.runs import start_run
from runtime.statuses import StatusName
from runtime.store.mongo import MongoStore
from runtime.store.settings import StoreSettings

Document = dict[str, Any]

WIDTHS = (10, 1_000, 10_000)
MEASURED_SUCCESSES = 1_000
"""Item successes measured per width (all of them below it): the cost of one does not depend on
which one it is, and 10,000 handlings would take minutes on the embedded server."""


class ByteCounter(monitoring.CommandListener):
    """Commands and the BSON bytes of each command and its reply."""

    def __init__(self) -> None:
        self.commands = 0
        self.bytes = 0
        self._lock = threading.Lock()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name not in CONNECTION_COMMANDS:
            with self._lock:
                self.commands += 1
                self.bytes += len(bson.encode(event.command))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        if event.command_name not in CONNECTION_COMMANDS:
            with self._lock:
                self.bytes += len(bson.encode(event.reply))

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def take(self) -> tuple[int, int]:
        with self._lock:
            taken = (self.commands, self.bytes)
            self.commands = self.bytes = 0
        return taken


def fan_out_workflow(items: int, static: bool = False, listed: bool = False) -> Workflow:
    """One job fanning out over ``input.items`` (``listed``: over what a ``list_items`` job
    returns), then a join; or, ``static``, that many jobs and a join."""
    if static:
        jobs: dict[str, Any] = {f"job_{index}": {} for index in range(items)}
        jobs["join"] = {"after": [f"job_{index}" for index in range(items)]}
    elif listed:
        jobs = {
            "list_items": {},
            "fan": {"after": ["list_items"], "for_each": "results.list_items.items", "max_concurrency": 100},
            "join": {"after": ["fan"]},
        }
    else:
        jobs = {"fan": {"for_each": "input.items", "max_concurrency": 100}, "join": {"after": ["fan"]}}
    return workflow_from_document({"workflow": "wide", "phases": {"work": {"jobs": jobs}}}, source="<bench>")


def listing(width: int) -> Any:
    """The ``list_items`` job of a listed fan-out: ``width`` names of 24 characters, which past
    about 5,000 is too large for an event and is kept by reference, as a real listing would be."""
    names = [f"partition-{index:06d}-abcdefg" for index in range(width)]
    return lambda event, context: {"items": names}


def cost_per_item_success(
    uri: str,
    progress: Progress,
    widths: tuple[int, ...] = WIDTHS,
    measured_successes: int = MEASURED_SUCCESSES,
) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for width in widths:
        progress(f"fan-out: the orchestrator's cost per item success at {width:,} items")
        listener = ByteCounter()
        watched: pymongo.MongoClient[Document] = pymongo.MongoClient(
            uri, tz_aware=True, event_listeners=[listener]
        )
        plain: pymongo.MongoClient[Document] = pymongo.MongoClient(uri, tz_aware=True)
        try:
            with scratch_databases(uri, "fanout") as (database,):
                settings = StoreSettings(database=database)
                jobs_side = MongoStore(plain, settings)
                jobs_side.ensure_indexes()
                dispatcher = CountingDispatcher()
                orchestrator = Orchestrator(MongoStore(watched, settings), dispatcher)
                run_id = start_run(
                    jobs_side, fan_out_workflow(width), input={"items": list(range(width))}
                ).run_id
                started = jobs_side.find_status(run_id, None, None, "workflow_started", 0)
                assert started is not None
                orchestrator.handle(envelope(started, database, settings.statuses_collection))
                measured = commands = sent = 0
                while dispatcher.events and measured < measured_successes:
                    event = dispatcher.events.pop(0)
                    status = StatusEvent(
                        run_id=run_id,
                        workflow="wide",
                        status=StatusName.SUCCESS,
                        phase="work",
                        job="fan",
                        attempt=event.attempt,
                        index=event.index,
                        output={"n": event.item},
                    )
                    document = status.to_document(utcnow())
                    jobs_side.insert_status(document)
                    listener.take()
                    orchestrator.handle(envelope(document, database, settings.statuses_collection))
                    spent, size = listener.take()
                    measured, commands, sent = measured + 1, commands + spent, sent + size
                run = jobs_side.load_run(run_id)
                figures[str(width)] = {
                    "item_successes_measured": measured,
                    "commands_per_item_success": round(commands / measured, 2),
                    "bytes_per_item_success": round(sent / measured),
                    "run_document_bytes": len(bson.encode(run or {})),
                }
        finally:
            watched.close()
            plain.close()
    small, large = figures[str(widths[0])], figures[str(widths[-1])]
    return {
        "fan_out_cost_per_item": figures,
        "fan_out_commands_ratio": round(
            large["commands_per_item_success"] / small["commands_per_item_success"], 2
        ),
        "fan_out_bytes_ratio": round(large["bytes_per_item_success"] / small["bytes_per_item_success"], 2),
    }


class _Quiet:
    def status(self, event: StatusEvent) -> None:
        return None

    def notification(self, subject: str, message: str) -> None:
        return None


def local_wall_times(
    uri: str, progress: Progress, widths: tuple[int, ...] = (1_000, 10_000)
) -> dict[str, Any]:
    """Local runs with stub jobs: a fan-out of each width over what a first job lists, and the
    same count of static jobs where that is possible (a spec of 10,000 jobs is not: its run
    document and every decision over it grow with it, which is what fan-outs are for). With
    more than one width, the largest fan-out's wall time and its time per item over the
    smallest's."""
    times: dict[str, Any] = {}
    fan_out_seconds: dict[int, float] = {}
    largest = 0
    client: pymongo.MongoClient[Document] = pymongo.MongoClient(uri, tz_aware=True)
    try:
        for width in widths:
            for static in (False, True) if width <= 1_000 else (False,):
                kind = "static_jobs" if static else "fan_out"
                progress(f"fan-out: a local run of {width:,} {kind.replace('_', ' ')}")
                with scratch_databases(uri, "fanout_local") as (database,):
                    store = MongoStore(client, StoreSettings(database=database))
                    definition = fan_out_workflow(width, static, listed=True)
                    handlers = {job.name: (lambda event, context: {"ok": True}) for job in definition.jobs()}
                    handlers["list_items"] = listing(width)
                    started = time.perf_counter()
                    runner = LocalRunner(store, definition, handlers, _Quiet(), RunOptions(timeout=600))
                    report = runner.run()
                    seconds = time.perf_counter() - started
                    assert report.status == "succeeded", report.error
                    size = len(bson.encode(store.load_run(report.run_id) or {}))
                    largest = max(largest, size)
                    times[f"{kind}_{width}"] = {"seconds": round(seconds, 1), "run_document_bytes": size}
                    if not static:
                        fan_out_seconds[width] = seconds
    finally:
        client.close()
    figures: dict[str, Any] = {"fan_out_local_runs": times, "largest_run_document_bytes": largest}
    if len(widths) > 1:
        small, large = (fan_out_seconds[width] / width for width in (widths[0], widths[-1]))
        figures["fan_out_local_seconds"] = round(fan_out_seconds[widths[-1]], 1)
        figures["fan_out_local_per_item_ratio"] = round(large / small, 2)
    return figures
