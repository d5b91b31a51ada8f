"""A deterministic, synchronous driver of the real handlers for engine tests.

It plays every hop of the deployed system in one thread: statuses inserted into MongoDB become
Atlas EventBridge envelopes for the orchestrator (the trigger and the rule), dispatched job
events are run through the real job wrapper (Lambda's async invoke), with optional duplicated
and shuffled delivery and crashes injected into the orchestrator, each crashed handling being
redelivered as Lambda's async retry would.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pymongo
from pymongo import monitoring

from benchmarks.orchestration import race
from cdk_app.local.atlas_events import envelope
from cdk_app.local.faults import CrashingDispatcher, CrashingStore, CrashPlan, InjectedCrash, NoCrash
from runtime.definition.loader import load_workflow
from runtime.definition.model import Job, Phase, RetryPolicy, Workflow
from runtime.documents.deployment import Deployment
from runtime.documents.events import JobEvent
from runtime.handlers.job import stub_handler
from runtime.service.fan_out import FanOutContexts
from runtime.service.job_attempt import UserHandler, run_attempt
from runtime.service.orchestrator import Orchestrator
from runtime.service.runs import start_run
from runtime.statuses import ORCHESTRATOR_STATUSES
from runtime.store.mongo import MongoStore


class RecordingDispatcher:
    """Collects dispatched job events (thread-safe); the driver runs them."""

    def __init__(self) -> None:
        self.events: list[JobEvent] = []
        self.history: list[JobEvent] = []
        self._lock = threading.Lock()

    def dispatch(self, event: JobEvent) -> None:
        with self._lock:
            self.events.append(event)
            self.history.append(event)

    def drain(self) -> list[JobEvent]:
        with self._lock:
            events, self.events = self.events, []
        return events


@dataclass
class Faults:
    duplicate: int = 1
    shuffle: bool = False
    crash_plan: Callable[[], CrashPlan] = NoCrash
    """A fresh plan per handling: the first delivery may crash, the redelivery never does."""
    seed: int = 0


@dataclass
class Outcome:
    run: dict[str, Any]
    executions: Counter[str]
    statuses: list[dict[str, Any]]
    dispatched: list[JobEvent]
    crashes: int = 0

    def job_states(self) -> dict[str, tuple[str, int]]:
        return {name: (job["state"], job["attempt"]) for name, job in self.run["jobs"].items()}

    def count(self, status: str, job: str | None = None) -> int:
        return sum(1 for s in self.statuses if s["status"] == status and (job is None or s["job"] == job))


@dataclass
class Driver:
    store: MongoStore
    definition: Workflow
    handlers: Mapping[str, UserHandler] = field(default_factory=dict)
    faults: Faults = field(default_factory=Faults)
    deployment: Deployment | None = None
    """The version map the runs start pinned to (None: invoked by function name)."""
    contexts: FanOutContexts = field(default_factory=FanOutContexts)
    """What the fan-outs share, kept across handlings as a warm orchestrator keeps it."""

    def __post_init__(self) -> None:
        self.dispatcher = RecordingDispatcher()
        self.executions: Counter[str] = Counter()
        self.rng = random.Random(self.faults.seed)
        self.crashes = 0
        self._seen: dict[str, set[Any]] = {}

    def _user(self, job: str) -> UserHandler:
        inner = self.handlers.get(job, stub_handler)

        def counted(event: dict[str, Any], context: Any) -> Any:
            self.executions[job] += 1
            return inner(event, context)

        return counted

    def deliver(self, event: dict[str, Any]) -> None:
        plan = self.faults.crash_plan()
        # A crashed handling is redelivered at once here, not a minute later as in Lambda: so its
        # dispatches are repeated at once too.
        orchestrator = Orchestrator(
            store=CrashingStore(self.store, plan),
            dispatcher=CrashingDispatcher(self.dispatcher, plan),
            redispatch_after=timedelta(0),
            contexts=self.contexts,
        )
        try:
            orchestrator.handle(event)
        except InjectedCrash:
            self.crashes += 1
            Orchestrator(
                store=self.store,
                dispatcher=self.dispatcher,
                redispatch_after=timedelta(0),
                contexts=self.contexts,
            ).handle(event)

    def run(self, run_id: str | None = None, run_input: Any = None, max_rounds: int = 1000) -> Outcome:
        run_id = start_run(
            self.store, self.definition, run_id=run_id, input=run_input, deployment=self.deployment
        ).run_id
        return self.settle(run_id, max_rounds)

    def settle(self, run_id: str, max_rounds: int = 1000) -> Outcome:
        """Deliver the run's statuses not delivered yet, and run what they dispatch, until
        nothing more comes (after a start, or an operation recorded since)."""
        seen: set[Any] = self._seen.setdefault(run_id, set())
        for _ in range(max_rounds):
            fresh = [s for s in self.store.run_statuses(run_id) if s["_id"] not in seen]
            seen.update(s["_id"] for s in fresh)
            events = [
                envelope(s, self.store.settings.database, self.store.settings.statuses_collection)
                for s in fresh
                if s["status"] in ORCHESTRATOR_STATUSES
            ] * self.faults.duplicate
            jobs = self.dispatcher.drain() * self.faults.duplicate
            if not events and not jobs:
                break
            if self.faults.shuffle:
                self.rng.shuffle(events)
                self.rng.shuffle(jobs)
            for event in events:
                self.deliver(event)
            for job in jobs:
                run_attempt(self.store, self._user(job.job), job.to_payload(), None, uuid.uuid4().hex)
        else:
            raise AssertionError(f"run {run_id} did not settle in {max_rounds} rounds")
        document = self.store.load_run(run_id)
        assert document is not None
        return Outcome(
            run=document,
            executions=self.executions,
            statuses=self.store.run_statuses(run_id),
            dispatched=self.dispatcher.history,
            crashes=self.crashes,
        )


def job_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """``Job`` keyword arguments from a spec-like mapping, where ``retries: N`` is the short form
    of ``retry=RetryPolicy(max=N)``."""
    own = dict(settings)
    if "retries" in own:
        own.setdefault("retry", RetryPolicy(max=own.pop("retries")))
        own.pop("retries", None)
    return own


def workflow(name: str, phases: Mapping[str, Mapping[str, Mapping[str, Any]]], **options: Any) -> Workflow:
    """A Workflow IR from a compact literal: ``{"phase": {"job": {"after": [...], ...}}}``."""
    return Workflow(
        name=name,
        phases=tuple(
            Phase(
                name=phase,
                jobs=tuple(
                    Job(name=job, phase=phase, **job_settings({"retries": 2, **settings}))
                    for job, settings in jobs.items()
                ),
            )
            for phase, jobs in phases.items()
        ),
        **options,
    )


CATCH_THE_FISH = load_workflow(Path(__file__).resolve().parent.parent / "workflows" / "catch_the_fish.yaml")


def race_orchestrators(
    store: MongoStore, mongo_uri: str, documents: list[dict[str, Any]], dispatcher: RecordingDispatcher
) -> list[BaseException]:
    """Record each status document in ``statuses``, then deliver them all at once, each to an
    orchestrator of its own with a MongoDB client of its own (its own Lambda); what they raised."""
    settings = store.settings
    events = []
    for document in documents:
        store.insert_status(document)
        events.append(envelope(document, settings.database, settings.statuses_collection))
    clients: list[pymongo.MongoClient[dict[str, Any]]] = [
        pymongo.MongoClient(mongo_uri, tz_aware=True) for _ in events
    ]

    def handler(event: dict[str, Any], client: pymongo.MongoClient[dict[str, Any]]) -> Callable[[], object]:
        return lambda: Orchestrator(MongoStore(client, settings), dispatcher).handle(event)

    try:
        return race([handler(event, client) for event, client in zip(events, clients, strict=True)])
    finally:
        for client in clients:
            client.close()


class CommandNames(monitoring.CommandListener):
    """The name of every MongoDB command a client sends, in order (what a cost test counts)."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.names.append(event.command_name)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        return None

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        return None
