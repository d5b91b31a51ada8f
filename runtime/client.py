"""What a script imports to start and operate runs: the same use cases the CLI, the console and
the starter function call, on a store opened from a connection string.

    from runtime.client import open_store, start_run, wait_for_end
    from runtime.definition.loader import load_workflow

    store = open_store("mongodb://localhost:27017")
    started = start_run(store, load_workflow("workflows/catch_the_fish.yaml"), input={"lake": "Ontario"})
    run = wait_for_end(store, started.run_id, timeout=60)

Starting a run writes it and its ``workflow_started`` status; the orchestrator (deployed, or the
dev server) does the rest.
"""

from __future__ import annotations

from runtime.service.approvals import answer_approval
from runtime.service.operations import (
    HistoryEntry,
    OperationReceipt,
    RunSummary,
    list_runs,
    request_cancel,
    request_redrive,
    run_history,
    wait_for_end,
)
from runtime.service.runs import StartedRun, start_run
from runtime.store.connection import cached_client
from runtime.store.mongo import MongoStore
from runtime.store.settings import StoreSettings

__all__ = [
    "HistoryEntry",
    "MongoStore",
    "OperationReceipt",
    "RunSummary",
    "StartedRun",
    "answer_approval",
    "list_runs",
    "open_store",
    "request_cancel",
    "request_redrive",
    "run_history",
    "start_run",
    "wait_for_end",
]


def open_store(uri: str, *, database: str | None = None) -> MongoStore:
    """The runs on ``uri`` (database ``workflows`` unless ``database``), with their indexes
    ensured, as the functions' store sees them."""
    settings = StoreSettings() if database is None else StoreSettings(database=database)
    store = MongoStore(cached_client(uri), settings)
    store.ensure_indexes()
    return store
