"""Per-step latency: how long from one job's report to the next job's start, modelled for the
cloud and measured in the dev server.

A step in the cloud is a chain of hops (``today_path``): the job wrapper records its ``success`` in
MongoDB, the Atlas trigger sees the insert and puts it on the EventBridge partner bus, a rule
invokes the orchestrator, which decides and dispatches the next job by a Lambda async invoke,
whose job wrapper claims the attempt and records ``started``. The hops AWS runs are published
distributions (``PUBLISHED``, each given by its p50 and p99 and fitted as a log-normal); the
hops that are our code are measured here, on the real handlers against the MongoDB server, and
resampled as measured; the Atlas trigger, for which nothing is published, is stood in for by the
local change-stream watcher's delay, measured likewise. The step's distribution is the Monte
Carlo sum of its hops (a fixed seed, the standard library's ``random``), next to Step Functions
Standard's published task step.

``fast_path`` is the same model for ``delivery: fast``: the job wrapper hands the id of its
recorded report to the orchestrator itself (a Lambda async invoke), skipping the trigger and
EventBridge, and the orchestrator reads the report by that id; the trigger's delivery follows as a
duplicate. The measured runs alternate between the two modes, so each mode's own hops (the
orchestrator's handling of the trigger's event, of the hand-off, of the duplicate) and MongoDB
commands are measured on the same code and server (``delivery_cost``).

Locally, ``dev_server_steps`` measures the step in the dev server itself, end to end.
"""

from __future__ import annotations

import io
import math
import queue
import random
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pymongo
from pymongo import monitoring
from pymongo.collection import Collection
from rich.console import Console

from benchmarks.orchestration import CountingDispatcher, OurSide, scratch_databases
from cdk_app.local.cloud import LOCAL_LEASES
from cdk_app.local.dev import DevOptions, DevServer, FolderDeployment
from cdk_app.local.jobs import context_for
from runtime.definition.loader import load_workflow, workflow_from_document
from runtime.definition.model import Workflow
from runtime.documents.envelopes import handoff_payload
from runtime.service.job_attempt import run_attempt
from runtime.service.runs import start_run
from runtime.statuses import ENDED, RunState, StatusName
from runtime.store.mongo import MongoStore
from runtime.store.settings import StoreSettings

Progress = Callable[[str], None]
Document = dict[str, Any]

Z99 = statistics.NormalDist().inv_cdf(0.99)
SEED = 31
SAMPLES = 100_000
"""Monte Carlo draws per path: the p99 of the sum moves by under a millisecond between seeds."""


# -- distributions ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LogNormal:
    """A hop known by its published p50 and p99: the log-normal through both (the usual shape of
    a latency: positive, with a long right tail)."""

    p50: float
    p99: float

    def draw(self, rng: random.Random) -> float:
        sigma = (math.log(self.p99) - math.log(self.p50)) / Z99
        return rng.lognormvariate(math.log(self.p50), sigma)


@dataclass(frozen=True)
class Measured:
    """A hop measured here: drawn from its measurements as they are (no shape assumed)."""

    values: tuple[float, ...]

    def draw(self, rng: random.Random) -> float:
        return rng.choice(self.values)


@dataclass(frozen=True)
class Constant:
    """A hop that always takes the same time (the smoke test's hand-computed case)."""

    ms: float

    def draw(self, rng: random.Random) -> float:
        return self.ms


Distribution = LogNormal | Measured | Constant


@dataclass(frozen=True)
class Hop:
    name: str
    origin: str
    """``published`` (the source is in ``SOURCES``), ``measured`` (here, on our code),
    ``local stand-in`` (measured here in place of a cloud hop nothing is published for) or
    ``published stand-in`` (a published figure that covers more than the hop)."""
    distribution: Distribution


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile: the value that ``fraction`` of ``values`` are at or below."""
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def compose(hops: Sequence[Hop], samples: int, seed: int = SEED) -> list[float]:
    """``samples`` draws of the whole step: one draw of every hop, summed (the hops run one
    after the other and are taken as independent)."""
    rng = random.Random(seed)
    return [sum(hop.distribution.draw(rng) for hop in hops) for _ in range(samples)]


def summary(values: Sequence[float]) -> dict[str, float]:
    return {
        "p50": round(percentile(values, 0.50), 1),
        "p99": round(percentile(values, 0.99), 1),
        "samples": len(values),
    }


# -- the published hops ----------------------------------------------------------------------

SOURCES: dict[str, dict[str, str]] = {
    "bite_sized_serverless": {
        "title": "Bite-Sized Serverless, 'Serverless Messaging: Latency Compared' (Luc van Donkersgoed)",
        "url": "https://bitesizedserverless.com/bite/serverless-messaging-latency-compared/",
        "measured": "2022-09-04/05 in eu-west-1; EventBridge measured again after its 2023-02-17 "
        "latency update; 1,024 messages per service, producer Lambda timestamp to consumer Lambda",
        "read_on": "2026-12-07",
    },
}

PUBLISHED: dict[str, LogNormal] = {
    # EventBridge (after its 2023 update), PutEvents to the target Lambda's handler: covers the
    # partner bus, the rule and the async invoke of the orchestrator.
    "eventbridge_to_lambda": LogNormal(148, 387),
    # No distribution of a direct ``Invoke`` with ``InvocationType=Event`` was found published:
    # SNS Standard to its Lambda (an SNS publish, then Lambda's async invocation of the
    # subscriber) stands in, an upper bound since it adds SNS's own hop.
    "lambda_async_invoke": LogNormal(73, 225),
    # Step Functions Standard, a Lambda task (async integration): the whole step.
    "step_functions_standard": LogNormal(142, 313),
    # SQS Standard to its Lambda through an event source mapping (a SendMessage by the producer
    # Lambda to the consumer's handler): the hand-off a queue would carry (not built).
    "sqs_to_lambda": LogNormal(16.2, 105),
}
"""p50 and p99 in milliseconds, from ``SOURCES["bite_sized_serverless"]``."""


# -- our own hops, measured ------------------------------------------------------------------


def chain_workflow(jobs: int) -> Workflow:
    """``jobs`` jobs in one phase, each after the one before: every step is one report and one
    next job."""
    names = [f"step_{index:02d}" for index in range(jobs)]
    spec = {name: ({"after": [names[index - 1]]} if index else {}) for index, name in enumerate(names)}
    return workflow_from_document(
        {"workflow": "chain", "phases": {"chain": {"jobs": spec}}}, source="<chain>"
    )


@dataclass
class HopTimes:
    report_ms: list[float]
    trigger_ms: list[float]
    orchestrator_ms: list[float]
    wrapper_start_ms: list[float]
    handoff_ms: list[float] = field(default_factory=list)
    """The orchestrator's handling of a hand-off (``delivery: fast``) until it has dispatched."""
    duplicate_ms: list[float] = field(default_factory=list)
    """Its handling of the trigger's delivery of a status a hand-off applied before."""
    commands: dict[str, list[int]] = field(
        default_factory=lambda: {"trigger": [], "handoff": [], "duplicate": []}
    )
    """The orchestrator's MongoDB commands per handling of a report, by what delivered it."""


class _Watcher:
    """The local trigger: a change stream on ``statuses`` waiting as the runner's does (``poll``
    seconds per wait), forwarding the inserts the trigger's match keeps here (``success``) with
    the moment each arrived."""

    def __init__(self, statuses: Collection[Document], poll: float) -> None:
        self.arrived: queue.Queue[tuple[float, Document]] = queue.Queue()
        self._stop = threading.Event()
        self._stream = statuses.watch(
            [{"$match": {"operationType": "insert", "fullDocument.status": StatusName.SUCCESS.value}}],
            max_await_time_ms=int(poll * 1000),
        )
        self._thread = threading.Thread(target=self._watch, name="latency watcher", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.is_set():
            change = self._stream.try_next()
            if change is not None:
                self.arrived.put((time.perf_counter(), change["fullDocument"]))

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._stream.close()


class _Commands(monitoring.CommandListener):
    """Counts the commands a client starts (the orchestrator's: the watcher has its own)."""

    def __init__(self) -> None:
        self.started_count = 0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.started_count += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


class _RecordedIds:
    """The job wrapper's hand-off in the measured runs: notes the id (the invoke is modelled)."""

    def __init__(self) -> None:
        self.ids: list[str] = []

    def hand_off(self, status_id: str) -> None:
        self.ids.append(status_id)


class _InsertAcks(monitoring.CommandListener):
    """When the server last acknowledged an ``insert`` of the job wrapper's client: the moment
    its report is in MongoDB, which is where the trigger's hop starts."""

    def __init__(self) -> None:
        self.last = 0.0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        pass

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        if event.command_name == "insert":
            self.last = time.perf_counter()

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def measure_hops(uri: str, runs: int, jobs: int, progress: Progress, poll: float = 0.05) -> HopTimes:
    """Runs of ``chain_workflow(jobs)`` driven hop by hop on one thread, timing each of our hops
    on the real code: the job wrapper (``run_attempt``, as a job function runs it, reading
    through its workflow's views, on a client of its own) from its call to the user's code
    (``wrapper_start``) and from the user's return to its ``success`` acknowledged by the server
    (``report``); the change stream from that acknowledgement to the insert's arrival
    (``trigger``, the local stand-in); the orchestrator's handling of the arrived status, signed
    and checked as deployed, until it has dispatched the next job (``orchestrator``: its decision
    and its MongoDB round trips; the invoke itself is counted, not made). Every other run is
    ``delivery: fast``: the orchestrator handles the wrapper's hand-off first (``handoff``), then
    the trigger's delivery of the same status (``duplicate``)."""
    definition = chain_workflow(jobs)
    times = HopTimes([], [], [], [])
    acks = _InsertAcks()
    commands = _Commands()
    client: pymongo.MongoClient[Document] = pymongo.MongoClient(
        uri, tz_aware=True, event_listeners=[commands]
    )
    jobs_client: pymongo.MongoClient[Document] = pymongo.MongoClient(
        uri, tz_aware=True, event_listeners=[acks]
    )
    watch_client: pymongo.MongoClient[Document] = pymongo.MongoClient(uri, tz_aware=True)
    try:
        with scratch_databases(uri, "latency") as (database,):
            side = OurSide(client, database)
            side.store.ensure_views(definition.name)
            job_store = OurSide(jobs_client, database).store.reading_as(definition.name)
            watcher = _Watcher(watch_client[database][side.settings.statuses_collection], poll)
            measured = _Measured(side, job_store, watcher, times, acks, commands)
            try:
                for run in range(runs):
                    fast = run % 2 == 1
                    mode = "fast" if fast else "economy"
                    progress(f"latency: hops of chain run {run + 1}/{runs} ({jobs} jobs, {mode})")
                    measured.run(definition, fast)
            finally:
                watcher.close()
    finally:
        client.close()
        jobs_client.close()
        watch_client.close()
    return times


class _TimedCode:
    """The user's code of a step: returns at once, noting when it was entered and left."""

    entered = returned = 0.0

    def __call__(self, payload: dict[str, Any], context: Any) -> dict[str, Any]:
        self.entered = time.perf_counter()
        self.returned = time.perf_counter()
        return {"step": payload["job"]}


@dataclass
class _Measured:
    side: OurSide
    job_store: MongoStore
    watcher: _Watcher
    times: HopTimes
    acks: _InsertAcks
    commands: _Commands

    def run(self, definition: Workflow, fast: bool) -> None:
        run_id = f"latency-{uuid.uuid4().hex[:8]}"
        dispatcher: CountingDispatcher = self.side.dispatcher
        dispatcher.events.clear()
        self.side.orchestrator.handle(self.side.started_run(definition, run_id))
        while dispatcher.events:
            self._step(definition, dispatcher, fast)
        run = self.side.store.read_run(run_id)
        if run is None or run.state != RunState.SUCCEEDED:
            raise RuntimeError(f"chain run {run_id} did not succeed: {run and run.state}")

    def _step(self, definition: Workflow, dispatcher: CountingDispatcher, fast: bool) -> None:
        event = dispatcher.events.pop()
        user_code = _TimedCode()
        handoff = _RecordedIds() if fast else None
        request_id = uuid.uuid4().hex
        context = context_for(definition.name, definition.job(event.job), request_id)
        called = time.perf_counter()
        result = run_attempt(
            self.job_store, user_code, event.to_payload(), context, request_id, LOCAL_LEASES, handoff
        )
        if result.outcome != StatusName.SUCCESS:
            raise RuntimeError(f"{event.job} of {event.run_id}: {result.outcome} {result.error}")
        recorded = self.acks.last  # the success: the wrapper's last insert
        self.times.wrapper_start_ms.append(1000 * (user_code.entered - called))
        self.times.report_ms.append(1000 * (recorded - user_code.returned))
        if handoff is not None:
            (status_id,) = handoff.ids
            self._handle(handoff_payload(status_id), "handoff", self.times.handoff_ms)
        arrival, document = self.watcher.arrived.get(timeout=30)
        if document.get("job") != event.job:
            raise RuntimeError(f"the watcher saw {document.get('job')} where {event.job} was expected")
        # The stream may hand the insert over before the client has read the server's reply.
        self.times.trigger_ms.append(max(0.0, 1000 * (arrival - recorded)))
        if handoff is None:
            self._handle(self.side.event(document), "trigger", self.times.orchestrator_ms)
            return
        dispatched = len(dispatcher.events)
        self._handle(self.side.event(document), "duplicate", self.times.duplicate_ms)
        if len(dispatcher.events) != dispatched:
            raise RuntimeError(f"the trigger's duplicate of {event.job}'s success dispatched again")

    def _handle(self, delivered: Document, delivery: str, handled_ms: list[float]) -> None:
        """One handling by the orchestrator, timed and its commands counted; a handling that
        dispatches no next job (the last job's success ends the run) is no step's hop."""
        dispatcher: CountingDispatcher = self.side.dispatcher
        waiting = len(dispatcher.events)
        before = self.commands.started_count
        handled = time.perf_counter()
        self.side.orchestrator.handle(delivered)
        elapsed = 1000 * (time.perf_counter() - handled)
        self.times.commands[delivery].append(self.commands.started_count - before)
        if len(dispatcher.events) > waiting or delivery == "duplicate":
            handled_ms.append(elapsed)


# -- the paths -------------------------------------------------------------------------------


def today_path(times: HopTimes) -> tuple[Hop, ...]:
    """What a step goes through today."""
    return (
        Hop("job wrapper records its report (MongoDB insert)", "measured", _measured(times.report_ms)),
        Hop("Atlas trigger sees the insert", "local stand-in", _measured(times.trigger_ms)),
        Hop("EventBridge partner bus, rule, orchestrator", "published", PUBLISHED["eventbridge_to_lambda"]),
        Hop("orchestrator decides and dispatches", "measured", _measured(times.orchestrator_ms)),
        Hop("Lambda async invoke of the next job", STAND_IN, PUBLISHED["lambda_async_invoke"]),
        Hop("job wrapper claims the attempt, records started", "measured", _measured(times.wrapper_start_ms)),
    )


def fast_path(times: HopTimes) -> tuple[Hop, ...]:
    """``delivery: fast``: the job wrapper invokes the orchestrator itself with the id of its
    recorded report; the orchestrator reads the report by that id, decides and dispatches."""
    today = today_path(times)
    invoke = Hop(
        "Lambda async invoke of the orchestrator (the hand-off)", STAND_IN, PUBLISHED["lambda_async_invoke"]
    )
    handled = Hop(
        "orchestrator reads the handed-off status, decides, dispatches",
        "measured",
        _measured(times.handoff_ms),
    )
    return (today[0], invoke, handled, *today[4:])


def fast_path_over_sqs(times: HopTimes) -> tuple[Hop, ...]:
    """NOT BUILT: the same hand-off carried by an SQS queue the orchestrator polls (an event
    source mapping) instead of an async invoke; what would bring the step's p50 below 142 ms."""
    fast = fast_path(times)
    queue = Hop(
        "SQS Standard to the orchestrator (event source mapping)", "published", PUBLISHED["sqs_to_lambda"]
    )
    return (fast[0], queue, *fast[2:])


STAND_IN = "published stand-in"


def delivery_cost(times: HopTimes) -> dict[str, dict[str, float]]:
    """What a job costs in each mode beyond its own function's invocation and commands (the same
    in both): the orchestrator's invocations per report, the events the Atlas trigger puts on
    EventBridge (one per report in both: the trigger stays the backstop) and the orchestrator's
    MongoDB commands per report, the medians measured here."""
    economy = statistics.median(times.commands["trigger"])
    fast = statistics.median(times.commands["handoff"]) + statistics.median(times.commands["duplicate"])
    return {
        "economy": {
            "lambda_invocations": 2,
            "eventbridge_events": 1,
            "orchestrator_mongodb_commands": economy,
        },
        "fast": {"lambda_invocations": 3, "eventbridge_events": 1, "orchestrator_mongodb_commands": fast},
    }


def _measured(values: Sequence[float]) -> Measured:
    return Measured(tuple(values))


def cloud_model(times: HopTimes, samples: int = SAMPLES, seed: int = SEED) -> dict[str, Any]:
    """Both paths' steps and Step Functions Standard's, p50 and p99 in milliseconds, with the hops."""
    paths = {
        "today": today_path(times),
        "fast_path": fast_path(times),
        "fast_path_over_sqs_not_built": fast_path_over_sqs(times),
    }
    figures: dict[str, Any] = {}
    for name, hops in paths.items():
        figures[name] = {
            **summary(compose(hops, samples, seed)),
            "hops": [
                {"hop": hop.name, "origin": hop.origin, **_hop_summary(hop.distribution)} for hop in hops
            ],
        }
    sfn = PUBLISHED["step_functions_standard"]
    figures["step_functions_standard"] = {"p50": sfn.p50, "p99": sfn.p99, "origin": "published"}
    return figures


def _hop_summary(distribution: Distribution) -> dict[str, float]:
    if isinstance(distribution, LogNormal):
        return {"p50": distribution.p50, "p99": distribution.p99}
    if isinstance(distribution, Measured):
        return {key: value for key, value in summary(distribution.values).items() if key != "samples"}
    return {"p50": distribution.ms, "p99": distribution.ms}


# -- the dev server, measured ----------------------------------------------------------------

STEP_CODE = """
def handler(event, context):
    return {"step": event["job"]}
"""
"""Each job's code: returns at once, so a step is all delivery."""


def dev_server_steps(uri: str, runs: int, jobs: int, progress: Progress) -> dict[str, Any]:
    """The dev server (``DevServer``: the change stream, the rules, the handlers on its thread
    pools, job code in worker processes) serving a folder with a chain of ``jobs`` jobs; ``runs``
    runs started one after another, after one that starts the job workers (not counted). A step
    is the ``started`` of a job after the ``success`` of the one before, by the dates the job
    wrapper wrote in them (milliseconds)."""
    with tempfile.TemporaryDirectory(prefix="bench_latency_") as folder:
        root = Path(folder)
        specs = root / "workflows"
        (specs / "jobs").mkdir(parents=True)
        (specs / "jobs" / "step.py").write_text(STEP_CODE, encoding="utf-8")
        definition = _chain_spec(specs, jobs)
        client: pymongo.MongoClient[Document] = pymongo.MongoClient(uri, tz_aware=True)
        try:
            with scratch_databases(uri, "latency_dev") as (database,):
                store = MongoStore(client, StoreSettings(database=database))
                deployment = FolderDeployment(specs, store.settings, lambda line: None)
                options = DevOptions(snapshots=root / "code")
                server = DevServer(store, deployment, Console(file=io.StringIO()), options)
                stop = threading.Event()
                serving = threading.Thread(target=server.serve, args=(stop,), name="dev server", daemon=True)
                serving.start()
                try:
                    _wait_for(
                        partial(_deployed, deployment, definition.name), "the dev server to load the spec"
                    )
                    time.sleep(1.0)  # the change stream opens after the load; the first run is not counted
                    steps: list[float] = []
                    for run in range(runs + 1):
                        progress(f"latency: dev server chain run {run + 1}/{runs + 1} ({jobs} jobs)")
                        run_id = start_run(store, definition).run_id
                        _wait_for(partial(_ended, store, run_id), f"run {run_id} to end")
                        if run:
                            steps += _step_gaps(store, run_id, definition)
                finally:
                    stop.set()
                    serving.join(timeout=30)
        finally:
            client.close()
    return {"jobs_per_run": jobs, "runs": runs, **summary(steps), "mean": round(statistics.fmean(steps), 1)}


def _chain_spec(folder: Path, jobs: int) -> Workflow:
    lines = ["workflow: chain", "phases:", "  chain:", "    jobs:"]
    for index in range(jobs):
        after = f", after: [step_{index - 1:02d}]" if index else ""
        lines.append(f"      step_{index:02d}: {{code: jobs/step.py{after}}}")
    path = folder / "chain.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return load_workflow(path)


def _wait_for(condition: Callable[[], bool], what: str, seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"gave up waiting for {what}")
        time.sleep(0.02)


def _deployed(deployment: FolderDeployment, workflow: str) -> bool:
    return workflow in deployment.workflows


def _ended(store: MongoStore, run_id: str) -> bool:
    run = store.read_run(run_id)
    return run is not None and run.state in ENDED


def _step_gaps(store: MongoStore, run_id: str, definition: Workflow) -> list[float]:
    run = store.read_run(run_id)
    if run is None or run.state != RunState.SUCCEEDED:
        raise RuntimeError(f"dev server chain run {run_id} did not succeed: {run and run.state}")
    names = [job.name for job in definition.jobs()]
    gaps: list[float] = []
    for before, after in zip(names, names[1:], strict=False):
        success = store.find_status(run_id, "chain", before, StatusName.SUCCESS, 1)
        started = store.find_status(run_id, "chain", after, StatusName.STARTED, 1)
        if success is None or started is None:
            raise RuntimeError(f"run {run_id}: no success of {before} or no started of {after}")
        gaps.append((started["date"] - success["date"]).total_seconds() * 1000)
    return gaps


# -- the figures -----------------------------------------------------------------------------


def step_latency(
    uri: str,
    progress: Progress,
    runs: int = 30,
    jobs: int = 10,
    samples: int = SAMPLES,
    dev_runs: int = 30,
) -> dict[str, Any]:
    """The cloud model of both paths next to Step Functions Standard, and the dev server's steps."""
    times = measure_hops(uri, runs, jobs, progress)
    progress(f"latency: composing the cloud paths, {samples:,} draws each")
    model = cloud_model(times, samples)
    dev = dev_server_steps(uri, dev_runs, jobs, progress)
    return {
        "step_latency_fast_path_p50_ms": model["fast_path"]["p50"],
        "step_latency_cloud_model_ms": model,
        "delivery_cost_per_job": delivery_cost(times),
        "step_latency_dev_server_ms": dev,
        "step_latency_sources": SOURCES,
    }


def side_by_side(results: dict[str, Any]) -> list[str]:
    """The step figures of ``results`` as printed lines, the four p50/p99 pairs together."""
    model = results.get("step_latency_cloud_model_ms")
    dev = results.get("step_latency_dev_server_ms")
    if model is None or dev is None:
        return []
    rows = [
        ("cloud, economy: today's path (model)", model["today"]),
        ("cloud, fast: the hand-off by async invoke (model)", model["fast_path"]),
        ("cloud, the hand-off over SQS (model, not built)", model["fast_path_over_sqs_not_built"]),
        ("Step Functions Standard, Lambda task (published)", model["step_functions_standard"]),
        ("dev server, this machine (measured)", dev),
    ]
    width = max(len(label) for label, _ in rows)
    lines = ["  step latency, a job's report to the next job's start (ms):   p50     p99"]
    lines += [f"    {label:<{width}}  {row['p50']:>7.1f} {row['p99']:>7.1f}" for label, row in rows]
    for mode, cost in results.get("delivery_cost_per_job", {}).items():
        lines.append(
            f"  delivery {mode}, per job: {cost['lambda_invocations']} Lambda invocations, "
            f"{cost['eventbridge_events']} EventBridge event, {cost['orchestrator_mongodb_commands']} "
            "MongoDB commands of the orchestrator (median)"
        )
    return lines
