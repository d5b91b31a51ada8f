"""What surrounds the handlers in the cloud, played on this machine: EventBridge (the rules' own
patterns, matched by moto's implementation of EventBridge pattern matching) and Lambda (the
orchestrator, notifier and job wrapper called on thread pools, concurrently, each invocation with
its own request id, retried as Lambda retries and reported to the on-failure destination).

``run`` drives it for one workflow and one run, the dev server for every workflow of a folder;
both feed it the inserts of ``statuses`` a change stream sees, as the Atlas trigger would.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol, cast, runtime_checkable

from cdk_app.local.atlas_events import envelope
from cdk_app.local.delivery import Bus, DaemonPool, FaultSettings
from cdk_app.local.embedded_mongo import plans_reads_through_views
from cdk_app.local.faults import CrashingClaims, CrashingDispatcher, CrashingStore, CrashPlan
from cdk_app.local.jobs import JOB_INVOCATION_TRIES, context_for, on_failure_record
from runtime import limits
from runtime.aws.dispatch import REFUSALS
from runtime.definition.model import Job, Workflow, job_function_name
from runtime.documents.children import ChildStart
from runtime.documents.events import JobEvent
from runtime.documents.run import Document, StatusEvent
from runtime.errors import RunError
from runtime.patterns import notifier_pattern, orchestrator_pattern
from runtime.ports import InvocationRefused
from runtime.service.children import start_child
from runtime.service.fan_out import FanOutContexts
from runtime.service.job_attempt import LeaseSettings, UserHandler, run_attempt
from runtime.service.notifier import NotifierService
from runtime.service.orchestrator import Orchestrator
from runtime.store.mongo import MongoStore
from runtime.store.settings import StoreSettings

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from moto.events.models import EventPattern
    from moto.events.utils import EventMessageType


class RunObserver(Protocol):
    """Hears what happens, in the order the trigger sees it (progress display, tests)."""

    def status(self, event: StatusEvent) -> None:
        """A status was inserted into ``statuses``."""

    def notification(self, subject: str, message: str) -> None:
        """The notifier published a message."""


@runtime_checkable
class Ticking(Protocol):
    """An observer that shows the jobs still running, with their elapsed time, when asked."""

    def tick(self, now: datetime) -> None: ...


@dataclass(frozen=True, kw_only=True)
class JobFunction:
    """A deployed job function: the job's settings (memory, timeout) and the code it runs."""

    job: Job
    handler: UserHandler


JobFunctions = Callable[[JobEvent], JobFunction | None]
"""The function a job event invokes (the one its ``function`` names, or the job's by name), or
None when no such function is deployed."""


@dataclass(frozen=True, kw_only=True)
class CloudOptions:
    faults: FaultSettings
    handler_threads: int
    """Concurrent orchestrator and notifier invocations (EventBridge delivers concurrently)."""
    job_threads: int
    """Concurrent job invocations: the jobs of a phase run at the same time, as on Lambda."""


def _event_pattern(pattern: dict[str, Any]) -> EventPattern:
    # Imported here: moto takes half a second to import, which every other CLI command would pay.
    from moto.events.models import EventPattern

    return EventPattern.load(json.dumps(pattern))


@dataclass(frozen=True, kw_only=True)
class Rule:
    """An EventBridge rule: the synthesized pattern and the target it invokes."""

    target: str
    """``orchestrator`` or ``notifier``."""
    pattern: EventPattern


def workflow_rules(workflow: Workflow, store: StoreSettings) -> tuple[Rule, ...]:
    """The rules a workflow's stack deploys: they accept only the local trigger's events (its
    partner source, ``store``'s database and statuses collection), as the deployed ones do."""
    origin = {"database": store.database, "statuses_collection": store.statuses_collection}
    rules = [
        Rule(target="orchestrator", pattern=_event_pattern(orchestrator_pattern(workflow.name, **origin)))
    ]
    if workflow.notify.on:  # no notify events, no notifier rule (EventBridge refuses `[]`)
        rules.append(
            Rule(
                target="notifier",
                pattern=_event_pattern(notifier_pattern(workflow.name, workflow.notify.on, **origin)),
            )
        )
    return tuple(rules)


LOCAL_LEASES = LeaseSettings(poll_every=timedelta(milliseconds=20))
"""Leases as in Lambda, but a duplicate invocation looks for the attempt's end more often: job
threads are few here, and a waiting one holds one."""


class LocalCloud:
    """EventBridge and Lambda around the real handlers, on one store. ``rules`` and
    ``job_functions`` say what is deployed; they are asked at each event and each invocation, so
    a deployment may change while events flow (the dev server picking up spec edits)."""

    def __init__(
        self,
        store: MongoStore,
        observer: RunObserver,
        options: CloudOptions,
        rules: Callable[[], Sequence[Rule]],
        job_functions: JobFunctions,
        workflows: Callable[[], Mapping[str, Workflow]] = dict,
    ) -> None:
        self.store = store
        self.observer = observer
        self.rules = rules
        self.job_functions = job_functions
        self.workflows = workflows
        """The workflows deployed now, whose starters start child runs (``start_child``)."""
        self.executions: Counter[str] = Counter()
        """Entries into each job's user code, by job name."""
        self._executions_lock = threading.Lock()
        self._fan_outs = FanOutContexts()
        """What the items of each fan-out share, kept as a warm orchestrator keeps it."""
        self._job_stores: dict[str, MongoStore] = {}
        self.bus = Bus(
            options.faults,
            {
                "orchestrator": DaemonPool("orchestrator", options.handler_threads),
                "notifier": DaemonPool("notifier", options.handler_threads),
                "job": DaemonPool("job", options.job_threads),
                "starter": DaemonPool("starter", options.handler_threads),
            },
        )
        self._targets: dict[str, Callable[[dict[str, Any], CrashPlan, str], None]] = {
            "orchestrator": self._orchestrate,
            "notifier": self._notify,
        }

    def close(self) -> None:
        self.bus.close()

    def route(self, document: Document, identity: str) -> None:
        """Send an inserted status document to every rule it matches; ``identity`` names it. An
        event EventBridge would refuse for its size goes nowhere, as in the cloud, and the run
        ends saying so instead of waiting."""
        event = envelope(document, self.store.settings.database, self.store.settings.statuses_collection)
        size = limits.json_bytes(event)
        if size > limits.EVENTBRIDGE_ENTRY_BYTES:
            self.bus.undeliverable.append(
                f"the status {identity} is {size:,} bytes as an EventBridge event, which takes at most "
                f"{limits.EVENTBRIDGE_ENTRY_BYTES:,}"
            )
            return
        self.publish(event, identity)

    def publish(self, event: dict[str, Any], identity: str) -> None:
        """Put ``event`` on the bus: each rule whose pattern matches it invokes its target, as
        EventBridge would; an event no rule accepts (another source, another database) reaches
        nothing."""
        for rule in self.rules():
            if rule.pattern.matches_event(cast("EventMessageType", event)):
                handle = self._targets[rule.target]
                self.bus.send(rule.target, f"{rule.target}:{identity}", partial(handle, event), True)

    def _orchestrate(self, event: dict[str, Any], plan: CrashPlan, request_id: str) -> None:
        Orchestrator(
            store=CrashingStore(self.store, plan),
            dispatcher=CrashingDispatcher(self, plan),
            # The bus redelivers a crashed handling at once, not a minute later as Lambda does.
            redispatch_after=timedelta(0),
            contexts=self._fan_outs,
            children=self,
        ).handle(event)

    def _notify(self, event: dict[str, Any], plan: CrashPlan, request_id: str) -> None:
        NotifierService(
            notifiers=[LocalNotifier(self.observer, plan)],
            store=self.store,
            claims=CrashingClaims(self.store, plan),
            # A redelivery with the same request id is the bus retrying this crashed handling.
            retry_after=timedelta(0),
        ).handle(event, request_id)

    def dispatch(self, event: JobEvent) -> None:
        """The orchestrator's Dispatcher port: an asynchronous invoke of the job's function, with
        Lambda's payload limit, its tries and its on-failure destination (the orchestrator). A job
        whose function is not deployed, or whose event is too large, is refused at once, as Lambda
        refuses it."""
        self._function(event)
        if limits.json_bytes(event.to_payload()) > limits.LAMBDA_ASYNC_PAYLOAD_BYTES:
            name = job_function_name(event.workflow, event.job)
            raise InvocationRefused(REFUSALS["RequestEntityTooLargeException"].format(name=name, error=""))
        self.bus.send(
            "job",
            f"job:{_invocation(event)}",
            partial(self._invoke_job, event),
            True,
            tries=JOB_INVOCATION_TRIES,
            on_give_up=partial(self.job_gave_up, event),
        )

    def start_child(self, request: ChildStart) -> None:
        """The orchestrator's ChildStarter port: an asynchronous invoke of the child workflow's
        starter, refused at once when that workflow is not deployed, as Lambda refuses it."""
        definition = self.workflows().get(request.workflow)
        if definition is None:
            raise InvocationRefused(
                f"the starter of child workflow {request.workflow!r} does not exist: no spec of it is "
                "deployed here"
            )
        self.bus.send(
            "starter", f"starter:{request.run_id}", partial(self._start_child, definition, request), True
        )

    def _start_child(
        self, definition: Workflow, request: ChildStart, plan: CrashPlan, request_id: str
    ) -> None:
        """As the starter function answers a refused start with an error (the attempt's failure
        recorded), not by raising for Lambda to retry."""
        try:
            start_child(CrashingStore(self.store, plan), definition, request)
        except RunError as exc:
            log.warning("child run %s not started: %s", request.run_id, exc)

    def _invoke_job(self, event: JobEvent, plan: CrashPlan, request_id: str) -> None:
        function = self._function(event)
        context = context_for(event.workflow, function.job, request_id)
        run_attempt(
            CrashingStore(self._job_store(event.workflow), plan),
            partial(self._enter_handler, function),
            event.to_payload(),
            context,
            request_id,
            LOCAL_LEASES,
        )

    def _job_store(self, workflow: str) -> MongoStore:
        """The store of ``workflow``'s job functions: it reads through the workflow's views alone,
        as a deployed job function's does (on the embedded server, the collections under the
        views' filter: it scans a whole collection for each read through a view). The views are
        made at its first job, as the deployed starter and reconciler make them before any."""
        store = self._job_stores.get(workflow)
        if store is None:
            self.store.ensure_views(workflow)
            views = plans_reads_through_views(self.store.database.client)
            store = self._job_stores[workflow] = self.store.reading_as(workflow, views)
        return store

    def _function(self, event: JobEvent) -> JobFunction:
        function = self.job_functions(event)
        if function is None:
            name = event.function or job_function_name(event.workflow, event.job)
            raise InvocationRefused(REFUSALS["ResourceNotFoundException"].format(name=name))
        return function

    def job_gave_up(self, event: JobEvent, request_id: str, error: BaseException) -> None:
        """What Lambda sends the job's on-failure destination after its last try (or once the
        invocation ran past its timeout)."""
        record = on_failure_record(event, request_id, error)
        identity = f"orchestrator:on-failure/{_invocation(event)}"
        if limits.json_bytes(record) > limits.LAMBDA_ASYNC_PAYLOAD_BYTES:
            self.bus.undeliverable.append(f"the on-failure record of {identity} is larger than Lambda takes")
            return
        self.bus.send("orchestrator", identity, partial(self._orchestrate, record), True)

    def job_timed_out(self, event: JobEvent, request_id: str, timeout: int) -> None:
        """Lambda stopped the attempt's invocation at its timeout: the on-failure destination
        hears of it, and the invocation no longer counts as running (a thread running job code
        in this process cannot be stopped and runs on; whatever it reports is too late to count).
        Lambda's record carries the event it invoked, the attempt's key included: ``event`` is
        rebuilt from the run, so the key is derived again, as only the stand-in for Lambda may."""
        keys = self.store.keys
        if keys is not None and event.attempt_key is None:
            event = replace(
                event, attempt_key=keys.attempt_key(event.run_id, event.job, event.attempt, event.index)
            )
        self.bus.abandon(f"job:{_invocation(event)}")
        self.job_gave_up(event, request_id, TimeoutError(f"Task timed out after {timeout}.00 seconds"))

    def _enter_handler(self, function: JobFunction, payload: dict[str, Any], context: Any) -> Any:
        """Counts each entry into the user's code: with every fault, one per attempt."""
        with self._executions_lock:
            self.executions[function.job.name] += 1
        return function.handler(payload, context)


def _invocation(event: JobEvent) -> str:
    """Names one job invocation on the bus: the job (and item) and the attempt."""
    item = "" if event.index is None else f"[{event.index}]"
    return f"{event.job}{item}/{event.attempt}"


def invoked_job(delivery: str) -> str | None:
    """The job a delivery on the bus invokes (``job:`` and ``_invocation``'s name), or None for
    a handler's delivery."""
    target, _, invocation = delivery.partition(":")
    return invocation.rpartition("/")[0].partition("[")[0] if target == "job" else None


class LocalNotifier:
    """The notifier's port locally: hands each message to the observer, under the crash plan
    of the handling that publishes it."""

    def __init__(self, observer: RunObserver, plan: CrashPlan) -> None:
        self.observer = observer
        self.plan = plan

    def publish(self, subject: str, message: str) -> None:
        self.plan.check("before publishing")
        self.observer.notification(subject, message)
        self.plan.check("after publishing")
