"""Our orchestrator against the seed's state-machine and orchestrator jobs, on one MongoDB server.

Both sides get the same events in the same order: the status document a job would have inserted,
wrapped as the Atlas trigger wraps it for ours (the seed's jobs read ``detail.fullDocument``, so
they get the document). Writing the status documents and creating runs are left out on both sides:
jobs and starters do that, not the handlers measured here. Each measurement uses databases of its
own, dropped afterwards, so the seed's documents never meet our unique status index.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import bson
import pymongo
from bson import ObjectId
from pymongo import monitoring
from pymongo.database import Database

from benchmarks.seed_port import SeedOrchestratorJob, SeedStateMachineJob, seed_state_machine
from cdk_app.local.atlas_events import envelope
from runtime.clock import utcnow
from runtime.definition.loader import load_workflow, workflow_from_document
from runtime.definition.model import Workflow
from runtime.documents.events import JobEvent
from runtime.documents.run import StatusEvent
from runtime.documents.signatures import StatusKeys
from runtime.service.orchestrator import Orchestrator
from runtime.service.runs import start_run
from runtime.statuses import JobState, RunState, StatusName
from runtime.store.mongo import MongoStore
from runtime.store.settings import StoreSettings

Document = dict[str, Any]
Progress = Callable[[str], None]

CATCH_THE_FISH = Path(__file__).resolve().parent.parent / "workflows" / "catch_the_fish.yaml"

WRITE_COMMANDS = frozenset({"insert", "update", "delete", "findAndModify"})
READ_COMMANDS = frozenset({"find", "aggregate", "count", "distinct", "getMore"})
CONNECTION_COMMANDS = frozenset({"hello", "isMaster", "ismaster", "ping", "endSessions", "saslStart"})
"""Not part of handling an event: a warm Lambda's client has done these already."""


class CommandCounter(monitoring.CommandListener):
    """Every command the client sends, by name, with the time each took to answer (thread-safe)."""

    def __init__(self) -> None:
        self._names: list[str] = []
        self._micros: list[tuple[str, int]] = []
        self._lock = threading.Lock()
        self.kept: list[dict[str, Any]] = []
        """What ``keep`` set aside, one entry per call."""

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name not in CONNECTION_COMMANDS:
            with self._lock:
                self._names.append(event.command_name)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        if event.command_name not in CONNECTION_COMMANDS:
            with self._lock:
                self._micros.append((event.command_name, event.duration_micros))

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def keep(self) -> None:
        """Set aside what was counted since the last ``take``."""
        self.kept.append(self.take())

    def take(self) -> dict[str, Any]:
        """What was counted since the last ``take``: totals, reads, writes, command names, and the
        milliseconds the answers took by command name."""
        with self._lock:
            names, self._names = self._names, []
            micros, self._micros = self._micros, []
        ms_by_command: dict[str, float] = {}
        for name, duration in micros:
            ms_by_command[name] = ms_by_command.get(name, 0.0) + duration / 1000
        return {
            "total": len(names),
            "reads": sum(name in READ_COMMANDS for name in names),
            "writes": sum(name in WRITE_COMMANDS for name in names),
            "commands": names,
            "ms_by_command": ms_by_command,
        }


@dataclass
class CountingDispatcher:
    """Stands in for Lambda's async invoke: the job attempts are only counted."""

    events: list[JobEvent] = field(default_factory=list)

    def dispatch(self, event: JobEvent) -> None:
        self.events.append(event)


def new_client(uri: str, listener: CommandCounter | None = None) -> pymongo.MongoClient[Document]:
    """A client whose connection is open already, as a warm Lambda's cached client is."""
    client: pymongo.MongoClient[Document] = pymongo.MongoClient(
        uri, tz_aware=True, event_listeners=[listener] if listener else []
    )
    client.admin.command("ping")
    return client


@contextmanager
def scratch_databases(uri: str, *prefixes: str) -> Iterator[list[str]]:
    """Fresh database names, dropped on the way out."""
    names = [f"bench_{prefix}_{uuid.uuid4().hex[:8]}" for prefix in prefixes]
    try:
        yield names
    finally:
        client: pymongo.MongoClient[Document]
        with pymongo.MongoClient(uri) as client:
            for name in names:
                client.drop_database(name)


# -- the events ------------------------------------------------------------------------------


KEYS = StatusKeys(bytes(range(32)))
"""The status key of every side of ours: the measured path is the deployed one, where every
status is signed and checked (docs/architecture.md, "Trust")."""


def run_status(run_id: str, workflow: str, status: StatusName) -> Document:
    event = StatusEvent(run_id=run_id, workflow=workflow, status=status).signed_by_control(KEYS)
    return {"_id": ObjectId(), **event.to_document(utcnow())}


def job_success(run_id: str, workflow: str, phase: str, job: str) -> Document:
    """The ``success`` document our job wrapper inserts for attempt 1, signed with its key."""
    event = StatusEvent(
        run_id=run_id,
        workflow=workflow,
        status=StatusName.SUCCESS,
        phase=phase,
        job=job,
        attempt=1,
        output={"done": job},
    ).signed_by_attempt(KEYS.attempt_key(run_id, job, 1, None))
    return {"_id": ObjectId(), **event.to_document(utcnow())}


def seed_success(state_id: str, job: str) -> Document:
    """The document a seed job inserts (the blog's ``stateId``, ``status``, ``job``, ``date``)."""
    return {"_id": ObjectId(), "stateId": state_id, "status": "success", "job": job, "date": utcnow()}


class OurSide:
    """Our orchestrator on one database: runs started by the starter's code, events enveloped."""

    def __init__(self, client: pymongo.MongoClient[Document], database: str) -> None:
        self.settings = StoreSettings(database=database)
        self.store = MongoStore(client, self.settings, KEYS)
        self.store.ensure_indexes()
        self.dispatcher = CountingDispatcher()
        self.orchestrator = Orchestrator(store=self.store, dispatcher=self.dispatcher)

    def event(self, document: Document) -> Document:
        return envelope(document, self.settings.database, self.settings.statuses_collection)

    def started_run(self, definition: Workflow, run_id: str) -> Document:
        """Create the run; the ``workflow_started`` event its handling starts from."""
        start_run(self.store, definition, run_id=run_id)
        return self.event(run_status(run_id, definition.name, StatusName.WORKFLOW_STARTED))

    def success(self, definition: Workflow, run_id: str, job: str) -> Document:
        phase = definition.job(job).phase
        return self.event(job_success(run_id, definition.name, phase, job))


class SeedSide:
    """The seed's two jobs on one database; each event goes to both, as the two Lambdas get it."""

    def __init__(self, database: Database[Document]) -> None:
        self.database = database
        self.state_machine = SeedStateMachineJob(database)
        self.orchestrator = SeedOrchestratorJob(database)

    def created_state(self, definition: Workflow, state_id: str) -> Document:
        """Insert the state machine (the blog's POST handler); the start event it inserts next."""
        self.database["state-machines"].insert_one(seed_state_machine(definition, state_id))
        return seed_success(state_id, definition.phase_order()[0].name)

    def handle(self, document: Document) -> None:
        self.state_machine.handle(document)
        self.orchestrator.handle(document)


def job_order(definition: Workflow) -> list[str]:
    """Every job once, in run order, each after the jobs it waits for."""
    order: list[str] = []
    for phase in definition.phase_order():
        done: set[str] = set()
        while len(done) < len(phase.jobs):
            for job in phase.jobs:
                if job.name not in done and set(job.after) <= done:
                    order.append(job.name)
                    done.add(job.name)
    return order


# -- round trips -----------------------------------------------------------------------------

HOT_PATH = {
    "fan_out": "go_to_fishing_ground",
    "no_successor": "drink_beer",
}
"""Two successes of catch_the_fish that do not end a phase: one starts three jobs, one nothing."""

LEAD_IN = ("buy_fishing_gear", "rent_a_boat")


def measure_round_trips(uri: str) -> dict[str, Any]:
    """Commands one handling sends, counted on a dedicated client; the run is brought to the
    measured event through another client, by the same handlers."""
    definition = load_workflow(CATCH_THE_FISH)
    counter = CommandCounter()
    with scratch_databases(uri, "rt_ours", "rt_seed") as (ours_db, seed_db):
        setup = new_client(uri)
        monitored = new_client(uri, counter)
        try:
            ours = OurSide(setup, ours_db)
            ours_measured = OurSide(monitored, ours_db)
            ours.orchestrator.handle(ours.started_run(definition, "rt"))
            for job in LEAD_IN:
                ours.orchestrator.handle(ours.success(definition, "rt", job))
            seed = SeedSide(setup[seed_db])
            seed_measured = SeedSide(monitored[seed_db])
            seed.handle(seed.created_state(definition, "rt"))
            for job in LEAD_IN:
                seed.handle(seed_success("rt", job))
            counter.take()
            breakdown: dict[str, dict[str, Any]] = {"ours": {}, "seed": {}}
            for case, job in HOT_PATH.items():
                outcome = ours_measured.orchestrator.handle(ours.success(definition, "rt", job))
                breakdown["ours"][case] = {**counter.take(), "dispatched": len(outcome.dispatched)}
                seed_measured.handle(seed_success("rt", job))
                breakdown["seed"][case] = counter.take()
        finally:
            setup.close()
            monitored.close()
    return {
        "round_trips_per_success": max(case["total"] for case in breakdown["ours"].values()),
        "round_trips_seed": max(case["total"] for case in breakdown["seed"].values()),
        "round_trips_breakdown": breakdown,
    }


# -- lost updates ----------------------------------------------------------------------------


def burst_workflow(jobs: int) -> Workflow:
    """A first phase of ``jobs`` root jobs that all run at once, then a phase of one job."""
    return workflow_from_document(
        {
            "workflow": "burst",
            "phases": {
                "burst": {"jobs": {f"job_{index:03d}": {} for index in range(jobs)}},
                "after": {"jobs": {"wrap_up": {}}},
            },
        },
        source="<burst workflow>",
    )


def race(handlers: Sequence[Callable[[], object]]) -> list[BaseException]:
    """Run every handler on its own thread, all released at once; the exceptions they raised."""
    barrier = threading.Barrier(len(handlers))
    errors: list[BaseException] = []

    def run(handler: Callable[[], object]) -> None:
        barrier.wait()
        try:
            handler()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(handler,)) for handler in handlers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def lost_updates(uri: str, threads: int, repeats: int, progress: Progress) -> dict[str, Any]:
    """``threads`` jobs report success at once, ``repeats`` times, to ours and to the seed; each
    thread has its own client (its own Lambda)."""
    definition = burst_workflow(threads)
    burst = [job.name for job in definition.phase_order()[0].jobs]
    lost_ours: list[int] = []
    lost_seed: list[int] = []
    advances: list[int] = []  # per burst, dispatches of our next phase's job: exactly once (invariant 2)
    errors: list[str] = []
    clients = [new_client(uri) for _ in range(threads)]
    try:
        with scratch_databases(uri, "lost_ours", "lost_seed") as (ours_db, seed_db):
            ours = OurSide(clients[0], ours_db)
            seed = SeedSide(clients[0][seed_db])
            sides = [OurSide(client, ours_db) for client in clients]
            for repeat in range(repeats):
                progress(f"lost updates: burst {repeat + 1}/{repeats} of {threads} successes")
                run_id = f"burst-{repeat}"
                ours.orchestrator.handle(ours.started_run(definition, run_id))
                events = [ours.success(definition, run_id, job) for job in burst]
                failures = race(
                    [
                        partial(side.orchestrator.handle, event)
                        for side, event in zip(sides, events, strict=True)
                    ]
                )
                errors += [f"ours: {exc!r}" for exc in failures]
                run = ours.store.read_run(run_id)
                lost_ours.append(
                    sum(run is None or run.jobs[job].state != JobState.SUCCEEDED for job in burst)
                )
                advances.append(
                    sum(
                        event.run_id == run_id and event.job == "wrap_up"
                        for side in sides
                        for event in side.dispatcher.events
                    )
                )

                seed.database["state-machines"].insert_one(seed_state_machine(definition, run_id))
                jobs = [SeedStateMachineJob(client[seed_db]) for client in clients]
                documents = [seed_success(run_id, name) for name in burst]
                failures = race([partial(job.handle, doc) for job, doc in zip(jobs, documents, strict=True)])
                errors += [f"seed: {exc!r}" for exc in failures]
                state = seed.database["state-machines"].find_one({"_id": run_id}) or {}
                finished = set(state["phases"]["burst"]["finished"]) & set(burst)
                lost_seed.append(len(burst) - len(finished))
    finally:
        for client in clients:
            client.close()
    return {
        "lost_updates_ours": sum(lost_ours),
        "lost_updates_seed": sum(lost_seed),
        "lost_updates_detail": {
            "threads": threads,
            "repeats": repeats,
            "ours_per_burst": lost_ours,
            "seed_per_burst": lost_seed,
            "ours_next_phase_dispatches_per_burst": advances,
            "handler_errors": errors,
        },
    }


# -- throughput ------------------------------------------------------------------------------


def _ours_runs(
    uri: str, database: str, definition: Workflow, runs: int, tag: str, counter: CommandCounter | None = None
) -> tuple[float, int]:
    """Seconds spent handling the events of ``runs`` whole runs, and the successes among them."""
    client = new_client(uri, counter)
    try:
        side = OurSide(client, database)
        order = job_order(definition)
        elapsed = 0.0
        for index in range(runs):
            run_id = f"{tag}-{index}"
            events = [side.started_run(definition, run_id)]
            events += [side.success(definition, run_id, job) for job in order]
            if counter:
                counter.take()
            started = time.perf_counter()
            for event in events:
                side.orchestrator.handle(event)
            elapsed += time.perf_counter() - started
            if counter:
                counter.keep()
            run = side.store.read_run(run_id)
            if run is None or run.state != RunState.SUCCEEDED:
                raise RuntimeError(f"our run {run_id} did not succeed: {run and run.state}")
        return elapsed, runs * len(order)
    finally:
        client.close()


def seed_events(definition: Workflow, state_id: str) -> list[Document]:
    """What reaches the seed's jobs over one run: each phase's start event (the first inserted by
    the blog's POST handler, later ones by its state-machine job), then the phase's successes."""
    events: list[Document] = []
    order = job_order(definition)
    for index, phase in enumerate(definition.phase_order()):
        events.append(seed_success(state_id, phase.name if index == 0 else f"{phase.name}Start"))
        events += [seed_success(state_id, job) for job in order if definition.job(job).phase == phase.name]
    return events


def _seed_runs(
    uri: str, database: str, definition: Workflow, runs: int, tag: str, counter: CommandCounter | None = None
) -> tuple[float, int]:
    """As ``_ours_runs``, for the seed's two jobs."""
    client = new_client(uri, counter)
    try:
        side = SeedSide(client[database])
        elapsed = 0.0
        for index in range(runs):
            state_id = f"{tag}-{index}"
            side.created_state(definition, state_id)
            events = seed_events(definition, state_id)
            if counter:
                counter.take()
            started = time.perf_counter()
            for event in events:
                side.handle(event)
            elapsed += time.perf_counter() - started
            if counter:
                counter.keep()
            state = side.database["state-machines"].find_one({"_id": state_id}) or {}
            if state.get("currentPhase") != "end":
                raise RuntimeError(f"seed run {state_id} did not end: {state.get('currentPhase')}")
        return elapsed, runs * len(job_order(definition))
    finally:
        client.close()


class RunsMeasure(Protocol):
    def __call__(
        self,
        uri: str,
        database: str,
        definition: Workflow,
        runs: int,
        tag: str,
        counter: CommandCounter | None = None,
    ) -> tuple[float, int]: ...


def commands_per_run(
    uri: str, database: str, measure: RunsMeasure, definition: Workflow, runs: int = 3
) -> dict[str, Any]:
    """What handling one whole run sends to MongoDB (mean of ``runs`` runs), counted on the
    handlers' own client: commands, reads, writes, and the milliseconds spent waiting for the
    server by command name, which says what the side's time goes to."""
    counter = CommandCounter()
    measure(uri, database, definition, runs, "counted", counter)
    per_run: dict[str, Any] = {
        key: sum(kept[key] for kept in counter.kept) / runs for key in ("total", "reads", "writes")
    }
    waited: dict[str, dict[str, float]] = {}
    for kept in counter.kept:
        for name in kept["commands"]:
            waited.setdefault(name, {"count": 0.0, "ms": 0.0})["count"] += 1 / runs
        for name, ms in kept["ms_by_command"].items():
            waited[name]["ms"] += ms / runs
    per_run["server_ms_by_command"] = {
        name: {key: round(number, 2) for key, number in value.items()} for name, value in waited.items()
    }
    return per_run


def _concurrent_rate(
    measure: RunsMeasure, uri: str, database: str, definition: Workflow, runs: int, workers: int
) -> float:
    """Successes per second of wall time with ``workers`` threads (own clients) running at once."""
    handled: list[int] = []

    def worker(tag: str) -> None:
        handled.append(measure(uri, database, definition, runs, tag)[1])

    started = time.perf_counter()
    errors = race([partial(worker, f"par{index}") for index in range(workers)])
    wall = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"a concurrent worker failed: {errors[0]!r}")
    return sum(handled) / wall


def _stored_bytes(uri: str, database: str) -> int:
    """BSON size of one finished run's state document."""
    client: pymongo.MongoClient[Document]
    with pymongo.MongoClient(uri) as client:
        document: Document = client[database]["state-machines"].find_one({"_id": "counted-0"}) or {}
    return len(bson.encode(document))


def throughput(uri: str, runs: int, rounds: int, workers: int, progress: Progress) -> dict[str, Any]:
    """Success events per second over whole runs of catch_the_fish (sequential and parallel
    successes, a phase change, the run's end), ours and the seed alternating round by round.

    Every round starts from empty databases: on the embedded server a findAndModify scans the
    whole collection (its cost grows with the collection while finds and updates by ``_id`` stay
    flat), so a growing collection would make later rounds slower than earlier ones."""
    definition = load_workflow(CATCH_THE_FISH)
    seconds = {"ours": 0.0, "seed": 0.0}
    events = {"ours": 0, "seed": 0}
    per_round: dict[str, list[float]] = {"ours": [], "seed": []}
    sides: dict[str, RunsMeasure] = {"ours": _ours_runs, "seed": _seed_runs}
    for round_number in range(rounds):
        for name, measure in sides.items():
            progress(f"throughput: round {round_number + 1}/{rounds}, {name}, {runs} runs one by one")
            with scratch_databases(uri, f"tp_{name}") as (database,):
                spent, handled = measure(uri, database, definition, runs, f"seq{round_number}")
            seconds[name] += spent
            events[name] += handled
            per_round[name].append(round(1000 * spent / handled, 2))
    rates = {name: events[name] / seconds[name] for name in sides}
    commands: dict[str, Any] = {}
    concurrent: dict[str, float] = {}
    for name, measure in sides.items():
        with scratch_databases(uri, f"tp_{name}") as (database,):
            commands[name] = commands_per_run(uri, database, measure, definition)
            commands[name]["run_document_bytes"] = _stored_bytes(uri, database)
        progress(f"throughput: {name}, {workers} workers with {runs} runs each, concurrently")
        with scratch_databases(uri, f"tp_{name}") as (database,):
            concurrent[name] = _concurrent_rate(measure, uri, database, definition, runs, workers)
    return {
        "events_per_second_ours": round(rates["ours"], 1),
        "events_per_second_seed": round(rates["seed"], 1),
        "events_per_second_ratio": round(rates["ours"] / rates["seed"], 3),
        "events_per_second_concurrent": {
            "workers": workers,
            "ours": round(concurrent["ours"], 1),
            "seed": round(concurrent["seed"], 1),
            "ratio": round(concurrent["ours"] / concurrent["seed"], 3),
        },
        "throughput_workload": {
            "workflow": definition.name,
            "successes_per_run": len(job_order(definition)),
            "runs_per_side": runs * rounds,
            "seconds": {name: round(value, 3) for name, value in seconds.items()},
            "commands_per_run": commands,
            "ms_per_event_by_round": per_round,
        },
        "ms_per_event": {name: round(1000 * seconds[name] / events[name], 2) for name in sides},
    }
