"""The app of the child workflow tests: an order workflow whose ship job runs the shipping
workflow as a child, and ``App``, which plays every hop of the deployed app in one thread."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import pymongo

from cdk_app.local.atlas_events import envelope
from runtime.definition.model import ChildWorkflow, Workflow
from runtime.documents.children import PARENT_RUN_ID, ChildStart
from runtime.errors import RunError
from runtime.handlers.job import stub_handler
from runtime.service.children import start_child
from runtime.service.job_attempt import run_attempt
from runtime.service.orchestrator import Orchestrator
from runtime.service.reconciler import Reconciler
from runtime.service.runs import start_run
from runtime.statuses import ORCHESTRATOR_STATUSES
from runtime.store.mongo import MongoStore
from tests.engine_harness import RecordingDispatcher, workflow

SPECS = Path(__file__).parent / "specs" / "children"

SHIP_INPUT = "{order_id: input.order_id, weight: results.reserve_stock.weight}"


def order(retries: int = 0) -> Workflow:
    return workflow(
        "order",
        {
            "take": {
                "reserve_stock": {},
                "ship": {
                    "after": ["reserve_stock"],
                    "retries": retries,
                    "child_workflow": ChildWorkflow(name="shipping", input=SHIP_INPUT),
                },
                "bill": {"after": ["ship"]},
            }
        },
    )


SHIPPING = workflow(
    "shipping",
    {"pack": {"pick": {}, "pack": {"after": ["pick"]}}, "send": {"book_carrier": {"retries": 0}}},
    output="{tracking: results.book_carrier.tracking, order: input.order_id}",
)

Handler = Callable[[dict[str, Any], Any], Any]


def _book(event: dict[str, Any], context: Any) -> Any:
    return {"tracking": f"TRACK-{event['input']['order_id']}-{event['input']['weight']}"}


HANDLERS: dict[str, Handler] = {
    "reserve_stock": lambda event, context: {"weight": 3},
    "book_carrier": _book,
    "bill": lambda event, context: {"billed": event["results"]["ship"]},
}


class App:
    """Every hop of a deployed app of several workflows, played in one thread: statuses become
    the orchestrator's events, dispatched attempts run through the job wrapper, child starts go
    to the child workflow's starter service. Deliveries may be duplicated and shuffled, and the
    first ``lose_starts`` child starts lost."""

    def __init__(
        self,
        store: MongoStore,
        definitions: list[Workflow],
        handlers: Mapping[str, Handler] = HANDLERS,
        duplicate: int = 1,
        shuffle: bool = False,
        seed: int = 0,
        lose_starts: int = 0,
    ) -> None:
        self.store = store
        self.definitions = {definition.name: definition for definition in definitions}
        self.handlers = handlers
        self.duplicate, self.shuffle, self.rng = duplicate, shuffle, random.Random(seed)
        self.lose_starts = lose_starts
        self.dispatcher = RecordingDispatcher()
        self.starts: list[ChildStart] = []
        self.seen: set[Any] = set()
        self.executions: dict[str, int] = {}

    def start_child(self, request: ChildStart) -> None:
        """The ``ChildStarter`` port: an asynchronous invoke of the child workflow's starter."""
        self.starts.append(request)

    def orchestrator(self) -> Orchestrator:
        return Orchestrator(
            store=self.store, dispatcher=self.dispatcher, redispatch_after=timedelta(0), children=self
        )

    def reconciler(self) -> Reconciler:
        return Reconciler(
            self.store,
            self.dispatcher,
            stale_after=timedelta(0),
            lost_invocation_after=lambda job: timedelta(0),
            children=self,
        )

    def start(self, run_id: str, run_input: Any) -> str:
        start_run(self.store, self.definitions["order"], run_id=run_id, input=run_input)
        self.settle()
        return run_id

    def settle(self, max_rounds: int = 500) -> None:
        for _ in range(max_rounds):
            if not self.step():
                return
        raise AssertionError(f"the app did not settle in {max_rounds} rounds")

    def step(self) -> bool:
        """One round of deliveries; False when there was nothing to deliver."""
        fresh = [
            s for s in self.store.statuses.find().sort("date", pymongo.ASCENDING) if s["_id"] not in self.seen
        ]
        self.seen.update(s["_id"] for s in fresh)
        settings = self.store.settings
        events = [
            envelope(s, settings.database, settings.statuses_collection)
            for s in fresh
            if s["status"] in ORCHESTRATOR_STATUSES
        ] * self.duplicate
        jobs = self.dispatcher.drain() * self.duplicate
        starts, self.starts = self.starts * self.duplicate, []
        if not (events or jobs or starts):
            return False
        if self.shuffle:
            for batch in (events, jobs, starts):
                self.rng.shuffle(batch)
        for event in events:
            self.orchestrator().handle(event)
        for job in jobs:
            run_attempt(self.store, self._user(job.job), job.to_payload(), None, uuid.uuid4().hex)
        for request in starts:
            if self.lose_starts:
                self.lose_starts -= 1
                continue
            try:
                start_child(self.store, self.definitions[request.workflow], request)
            except RunError:  # the starter answers with the error; the attempt's failure is recorded
                continue
        return True

    def _user(self, job: str) -> Handler:
        inner = self.handlers.get(job, stub_handler)

        def counted(event: dict[str, Any], context: Any) -> Any:
            self.executions[job] = self.executions.get(job, 0) + 1
            return inner(event, context)

        return counted

    def run(self, run_id: str) -> dict[str, Any]:
        document = self.store.load_run(run_id)
        assert document is not None, f"no run {run_id}"
        return document

    def children_of(self, run_id: str) -> list[dict[str, Any]]:
        return list(self.store.database[self.store.settings.runs_collection].find({PARENT_RUN_ID: run_id}))

    def statuses(self, run_id: str, status: str, job: str | None = None) -> list[dict[str, Any]]:
        return [s for s in self.store.run_statuses(run_id) if s["status"] == status and s["job"] == job]


def failing(job: str, times: int) -> Handler:
    """Fails its first ``times`` calls."""
    calls = {"n": 0}

    def handler(event: dict[str, Any], context: Any) -> Any:
        calls["n"] += 1
        if calls["n"] <= times:
            raise RuntimeError(f"{job} broke (call {calls['n']})")
        return HANDLERS.get(job, stub_handler)(event, context)

    return handler


def run_until_child_waits(app: App, run_id: str) -> None:
    """Deliver until the child of ``run_id``'s ship job has started and has its first jobs
    dispatched, and stop there: no job of the child has run."""
    settings = app.store.settings
    for _ in range(50):
        pending = app.dispatcher.drain()
        child_jobs = [job for job in pending if job.workflow == "shipping"]
        app.dispatcher.events = child_jobs
        if child_jobs:
            return
        fresh = [
            s for s in app.store.statuses.find().sort("date", pymongo.ASCENDING) if s["_id"] not in app.seen
        ]
        app.seen.update(s["_id"] for s in fresh)
        for s in fresh:
            if s["status"] in ORCHESTRATOR_STATUSES:
                app.orchestrator().handle(envelope(s, settings.database, settings.statuses_collection))
        for job in pending:
            run_attempt(app.store, app._user(job.job), job.to_payload(), None, uuid.uuid4().hex)
        starts, app.starts = app.starts, []
        for request in starts:
            start_child(app.store, app.definitions[request.workflow], request)
    raise AssertionError(f"the child of {run_id} never started")
