"""What a service of your own imports to start and operate runs: ``Client``.

    from runtime.client import Client

    client = Client("mongodb://127.0.0.1:27017")          # the dev server's URI, or Atlas
    started = client.start("catch_the_fish", {"lake": "Ontario"})
    run = client.wait(started.run_id, timeout=60)          # a RunReport: run.status, run.jobs
    client.cancel(started.run_id, "changed plans")

    client = Client.aws(region="eu-west-1")                # a deployed stack, through its starters

Over MongoDB it calls the use cases the CLI, the console and the starter function call, and
signs what it records with the operator's status key (``WORKFLOWS_STATUS_KEY``, the secret named
by ``WORKFLOWS_STATUS_KEY_SECRET_ARN``, or a local control plane's key). ``Client.aws`` invokes
each workflow's starter function (``<workflow>-starter``) instead, for services without access
to the database. Both answer with the same types, and refuse with the same errors:
``RunNotFound``, ``InputRefused``, ``OperationRefused`` (all ``RunError``) and
``StoreUnavailable``; never a driver's exception.

The module functions below ``Client`` (``open_store``, ``start_run``, ...) are the use cases
themselves, on a ``MongoStore``; they stay for scripts written against them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pymongo
import pymongo.errors

from runtime import contracts
from runtime.aws.starter import StarterInvoker
from runtime.definition.input_check import InputRefused
from runtime.definition.loader import workflow_in_folder
from runtime.definition.model import Workflow
from runtime.documents.callbacks import token_attempt
from runtime.documents.listing import PagePosition, RunSummary
from runtime.engine.schedule import ScheduledStart, firings, scheduled_start
from runtime.errors import OperationRefused, RunError, RunNotFound, StoreError, StoreUnavailable
from runtime.service.approvals import answer_approval
from runtime.service.callbacks import CallbackReceipt, complete_callback, heartbeat_callback
from runtime.service.events import EventReceipt, send_event
from runtime.service.folder_upgrade import request_upgrade_to_folder
from runtime.service.operations import (
    HistoryEntry,
    OperationReceipt,
    list_runs,
    request_cancel,
    request_redrive,
    run_history,
    wait_for_end,
)
from runtime.service.run_view import RunReport, summarize
from runtime.service.runs import StartedRun, start_run
from runtime.statuses import ENDED
from runtime.store.connection import cached_client
from runtime.store.mongo import MongoStore
from runtime.store.settings import StoreSettings
from runtime.store.status_keys import operator_keys

__all__ = [
    "CallbackReceipt",
    "Backfilled",
    "Client",
    "EventReceipt",
    "HistoryEntry",
    "InputRefused",
    "MongoStore",
    "OperationReceipt",
    "OperationRefused",
    "PagePosition",
    "RunError",
    "RunNotFound",
    "RunReport",
    "RunSummary",
    "ScheduledStart",
    "StartedRun",
    "StoreUnavailable",
    "answer_approval",
    "list_runs",
    "open_store",
    "request_cancel",
    "request_redrive",
    "run_history",
    "start_run",
    "wait_for_end",
]

T = TypeVar("T")

MAX_BACKFILL_RUNS = 10_000
"""The most runs one backfill starts: a longer range is a mistake more often than a wish (a rate
of one minute over a week is 10,080 runs); split it."""


@dataclass(frozen=True, kw_only=True)
class Backfilled:
    """One run a backfill started (or found started already: ``started.created`` false)."""

    scheduled: ScheduledStart
    started: StartedRun


class _Backend(Protocol):
    def start(
        self, workflow: str | Workflow, input: Any, run_id: str | None, *, scheduled: bool = False
    ) -> StartedRun: ...
    def definition(self, workflow: str | Workflow) -> Workflow: ...
    def get(self, run_id: str, workflow: str | None) -> RunReport: ...
    def history(self, run_id: str, workflow: str | None) -> list[HistoryEntry]: ...
    def list(
        self,
        workflow: str | None,
        status: str | None,
        since: datetime | None,
        limit: int,
        after: PagePosition | None,
        deploy_id: str | None,
    ) -> list[RunSummary]: ...
    def operate(self, workflow: str | None, action: str, run_id: str, **fields: Any) -> OperationReceipt: ...
    def send_event(
        self, workflow: str, name: str, payload: Any, run_id: str | None, event_id: str | None
    ) -> EventReceipt: ...
    def callback(self, action: str, token: str, fields: dict[str, Any]) -> CallbackReceipt: ...
    def ended(self, run_id: str, workflow: str | None) -> bool: ...


class Client:
    """Starts, reads and operates runs. ``Client(mongodb_uri)`` (or ``Client.local()``) works on
    the database; ``Client.aws()`` through the deployed starter functions. The verbs are the
    CLI's: ``start``, ``get``, ``wait``, ``watch``, ``cancel``, ``redrive``, ``approve``,
    ``reject``, ``send_event``, ``complete``, ``heartbeat``, ``list``, ``history``, ``backfill``."""

    def __init__(
        self,
        mongodb_uri: str | None = None,
        *,
        workflows_dir: str | Path = "workflows",
        database: str | None = None,
        environ: Mapping[str, str] = os.environ,
        backend: _Backend | None = None,
    ) -> None:
        if backend is None:
            uri = mongodb_uri or environ.get(contracts.MONGODB_URI)
            if not uri:
                raise StoreUnavailable(
                    f"no MongoDB given: pass the connection string (the dev server prints its URI) or set "
                    f"{contracts.MONGODB_URI}"
                )
            backend = _MongoBackend(open_store(uri, database=database, environ=environ), Path(workflows_dir))
        self._backend = backend

    @classmethod
    def local(
        cls,
        mongodb_uri: str | None = None,
        *,
        workflows_dir: str | Path = "workflows",
        database: str | None = None,
        environ: Mapping[str, str] = os.environ,
    ) -> Client:
        """The runs of the dev server (``python -m cdk_app dev``) or of any MongoDB: the URI given,
        else ``MONGODB_URI``; workflows are started from the specs in ``workflows_dir``."""
        return cls(mongodb_uri, workflows_dir=workflows_dir, database=database, environ=environ)

    @classmethod
    def on_store(cls, store: MongoStore, *, workflows_dir: str | Path = "workflows") -> Client:
        """A client on a store opened already (the test kit's, a tool's), which signs what it
        records with the store's keys."""
        return cls(backend=_MongoBackend(store, Path(workflows_dir)))

    @classmethod
    def aws(
        cls,
        *,
        stack: str | None = None,
        region: str | None = None,
        workflow: str | None = None,
        lambda_client: Any | None = None,
    ) -> Client:
        """The runs of a deployed app, through each workflow's starter function (its name is
        ``<workflow>-starter`` in whichever stack holds it; ``stack`` is only said in errors).
        A verb about one run needs to know its workflow: ``workflow`` here, or on the verb."""
        if lambda_client is None:
            import boto3
            from botocore.config import Config

            # No SDK retries: a start without a run id retried after the starter ran would
            # start a second run. A failed call is a StoreUnavailable for the caller to judge.
            config = Config(retries={"total_max_attempts": 1})
            lambda_client = boto3.client("lambda", region_name=region, config=config)
        return cls(backend=_StarterBackend(StarterInvoker(lambda_client), workflow, stack))

    # -- the verbs --

    def start(self, workflow: str | Workflow, input: Any = None, run_id: str | None = None) -> StartedRun:
        """Start a run of ``workflow`` (its name; over MongoDB also a loaded spec); idempotent on
        ``run_id`` (the existing run is answered, ``created`` false). ``InputRefused`` when the
        input does not match the input_schema."""
        return self._backend.start(workflow, input, run_id)

    def scheduled_starts(
        self, workflow: str | Workflow, start: datetime, end: datetime
    ) -> list[ScheduledStart]:
        """The runs ``workflow``'s schedule starts from ``start`` to ``end`` (both included):
        each fire time, in the spec's ``schedule_timezone``, with the run id and input the
        schedule gives it. A rate counts from ``start``. Starts nothing: what ``backfill`` would
        start. ``RunError`` for a workflow without a schedule, a range that ends before it starts
        or holds more than ``MAX_BACKFILL_RUNS``, or a cron expression only Scheduler plays."""
        definition = self._backend.definition(workflow)
        if definition.schedule is None:
            raise RunError(f"workflow {definition.name!r} has no schedule to backfill")
        if end < start:
            raise RunError(f"the range ends ({end.isoformat()}) before it starts ({start.isoformat()})")
        try:
            times = firings(definition, start - timedelta(microseconds=1), end, start)
        except ValueError as exc:
            raise RunError(
                f"the fire times of {definition.schedule} cannot be worked out here: {exc}"
            ) from None
        if len(times) > MAX_BACKFILL_RUNS:
            raise RunError(
                f"{definition.schedule} fires {len(times):,} times in that range; a backfill starts at most "
                f"{MAX_BACKFILL_RUNS:,} runs: split the range"
            )
        return [scheduled_start(definition, time) for time in times]

    def backfill(self, workflow: str | Workflow, start: datetime, end: datetime) -> Iterator[Backfilled]:
        """Start the runs ``scheduled_starts`` lists, one by one (each started when the one before
        it has been used: a caller may wait for it to end first), as the schedule would have:
        the same run id (a run that exists already, a repeat or one the schedule started, is
        not started again) and the workflow's ``schedule_overlap`` applied."""
        definition = self._backend.definition(workflow)
        for planned in self.scheduled_starts(definition, start, end):
            started = self._backend.start(definition, planned.input, planned.run_id, scheduled=True)
            yield Backfilled(scheduled=planned, started=started)

    def get(self, run_id: str, *, workflow: str | None = None) -> RunReport:
        """The run as ``status --json`` shows it: status, phase, error, each job's status,
        attempts, output, error and time. ``RunNotFound`` for an unknown run."""
        return self._backend.get(run_id, workflow)

    def has_ended(self, run_id: str, *, workflow: str | None = None) -> bool:
        """Whether the run has ended, with no redrive asked for and about to reopen it."""
        return self._backend.ended(run_id, workflow)

    def wait(
        self, run_id: str, timeout: float | None = None, *, poll: float = 0.5, workflow: str | None = None
    ) -> RunReport:
        """The run once it has ended (a redrive asked for and not applied yet counts as running),
        or as it is when ``timeout`` seconds have gone by: check ``status``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._backend.ended(run_id, workflow):
            if deadline is not None and time.monotonic() >= deadline:
                break
            time.sleep(poll if deadline is None else max(0.0, min(poll, deadline - time.monotonic())))
        return self.get(run_id, workflow=workflow)

    def watch(self, run_id: str, *, poll: float = 0.5, workflow: str | None = None) -> Iterator[RunReport]:
        """The run now, then again each time it changes, until it has ended (the last one
        yielded is the ended run)."""
        last: dict[str, Any] | None = None
        while True:
            # Whether it had ended is asked first: the run read after it shows that end.
            ended = self._backend.ended(run_id, workflow)
            report = self.get(run_id, workflow=workflow)
            shown = report.to_json()
            if shown != last:
                last = shown
                yield report
            if ended:
                return
            time.sleep(poll)

    def cancel(
        self, run_id: str, reason: str | None = None, *, workflow: str | None = None
    ) -> OperationReceipt:
        return self._backend.operate(workflow, "cancel", run_id, reason=reason)

    def redrive(self, run_id: str, *, upgrade: bool = False, workflow: str | None = None) -> OperationReceipt:
        """Run the failed jobs of a failed or cancelled run again; with ``upgrade``, on the
        workflow's current definition (and, in the cloud, its current versions)."""
        return self._backend.operate(workflow, "redrive", run_id, upgrade=upgrade)

    def approve(
        self, run_id: str, job: str, output: Any = None, *, workflow: str | None = None
    ) -> OperationReceipt:
        return self._backend.operate(workflow, "approve", run_id, job=job, output=output)

    def reject(
        self, run_id: str, job: str, reason: str | None = None, *, workflow: str | None = None
    ) -> OperationReceipt:
        return self._backend.operate(workflow, "reject", run_id, job=job, reason=reason)

    def send_event(
        self,
        workflow: str,
        name: str,
        payload: Any = None,
        *,
        run_id: str | None = None,
        event_id: str | None = None,
    ) -> EventReceipt:
        """Send the event ``name`` to the event jobs of ``workflow``'s runs (or of run ``run_id``
        alone) that wait for it now or start waiting within their ``retention``; a send repeated
        with the same ``event_id`` is one event."""
        return self._backend.send_event(workflow, name, payload, run_id, event_id)

    def complete(
        self, token: str, output: Any = None, *, error: str | None = None, completion_id: str | None = None
    ) -> CallbackReceipt:
        """Complete the callback job's attempt ``token`` was handed out for: it succeeds with
        ``output``, or fails with ``error`` (its retry rules apply). A token completes once; the
        same ``completion_id`` again is the same completion."""
        fields = {"error": error} if error is not None else {"output": output}
        return self._backend.callback("complete", token, fields | {"id": completion_id})

    def heartbeat(self, token: str, *, heartbeat_id: str | None = None) -> CallbackReceipt:
        """Keep the attempt ``token`` was handed out for waiting its ``timeout`` again from now."""
        return self._backend.callback("heartbeat", token, {"id": heartbeat_id})

    def history(self, run_id: str, *, workflow: str | None = None) -> list[HistoryEntry]:
        """Every status of the run in the order it was recorded, operations included."""
        return self._backend.history(run_id, workflow)

    def pages(
        self,
        workflow: str | None = None,
        *,
        status: str | None = None,
        since: datetime | None = None,
        page_size: int = 100,
    ) -> Iterator[list[RunSummary]]:
        """Every run ``list`` selects, a page at a time, newest first: each page is read when the
        one before has been used, from where it ended (a run started meanwhile is not shown;
        none is shown twice)."""
        position: PagePosition | None = None
        while True:
            page = self.list(workflow, status=status, since=since, limit=page_size, after=position)
            if page:
                yield page
            position = PagePosition.after(page, position)
            if len(page) < page_size or position is None:
                return

    def list(
        self,
        workflow: str | None = None,
        *,
        status: str | None = None,
        since: datetime | None = None,
        limit: int = 50,
        after: PagePosition | None = None,
        deploy_id: str | None = None,
    ) -> list[RunSummary]:
        """Runs newest first, at most ``limit``, of ``workflow`` (every workflow's over MongoDB),
        in ``status``, created at ``since`` or later; ``after`` a page's position
        (``PagePosition.after(page)``), the page that follows it; ``deploy_id``: only the runs
        pinned to that deploy."""
        return self._backend.list(workflow, status, since, limit, after, deploy_id)


def _guarded(action: str, call: Callable[[], T]) -> T:
    """``call``, with the driver's and the store's errors as ``StoreUnavailable``."""
    try:
        return call()
    except RunError:
        raise
    except (StoreError, pymongo.errors.PyMongoError) as exc:
        if isinstance(exc, StoreUnavailable):
            raise
        raise StoreUnavailable(f"could not {action}: {exc}") from exc


class _MongoBackend:
    def __init__(self, store: MongoStore, workflows_dir: Path) -> None:
        self.store = store
        self.workflows_dir = workflows_dir
        self._prepared: set[str] = set()
        """The workflows whose runs this client has made ready to start: once per client."""

    def definition(self, workflow: str | Workflow) -> Workflow:
        return (
            workflow if isinstance(workflow, Workflow) else workflow_in_folder(self.workflows_dir, workflow)
        )

    def start(
        self, workflow: str | Workflow, input: Any, run_id: str | None, *, scheduled: bool = False
    ) -> StartedRun:
        definition = self.definition(workflow)

        def start() -> StartedRun:
            # The unique keys the engine relies on, and the views its jobs read through: made at
            # a client's first start of the workflow, not at every start.
            if definition.name not in self._prepared:
                self.store.ensure_indexes()
                self.store.ensure_views(definition.name)
                self._prepared.add(definition.name)
            return start_run(self.store, definition, run_id=run_id, input=input, scheduled=scheduled)

        return _guarded("start a run", start)

    def get(self, run_id: str, workflow: str | None) -> RunReport:
        report = _guarded("read a run", lambda: summarize(self.store, run_id))
        if report is None or (workflow is not None and report.workflow != workflow):
            raise RunNotFound(f"no run {run_id!r} in this database (check the run id and the MongoDB URI)")
        return report

    def history(self, run_id: str, workflow: str | None) -> list[HistoryEntry]:
        return _guarded("read a run's history", lambda: run_history(self.store, run_id, workflow))

    def list(
        self,
        workflow: str | None,
        status: str | None,
        since: datetime | None,
        limit: int,
        after: PagePosition | None,
        deploy_id: str | None,
    ) -> list[RunSummary]:
        return _guarded(
            "list runs",
            lambda: list_runs(
                self.store,
                workflow=workflow,
                status=status,
                since=since,
                limit=limit,
                deploy_id=deploy_id,
                position=after,
            ),
        )

    def operate(self, workflow: str | None, action: str, run_id: str, **fields: Any) -> OperationReceipt:
        store = self.store
        if action == "cancel":
            return _guarded(
                "cancel", lambda: request_cancel(store, run_id, fields["reason"], workflow=workflow)
            )
        if action == "redrive" and fields["upgrade"]:
            return _guarded(
                "redrive",
                lambda: request_upgrade_to_folder(store, run_id, self.workflows_dir, workflow=workflow),
            )
        if action == "redrive":
            return _guarded("redrive", lambda: request_redrive(store, run_id, workflow=workflow))
        approve = action == "approve"
        return _guarded(
            action,
            lambda: answer_approval(
                store,
                run_id,
                fields["job"],
                approve=approve,
                output=fields.get("output"),
                reason=fields.get("reason"),
                workflow=workflow,
            ),
        )

    def send_event(
        self, workflow: str, name: str, payload: Any, run_id: str | None, event_id: str | None
    ) -> EventReceipt:
        return _guarded(
            "send an event",
            lambda: send_event(self.store, workflow, name, payload, run_id=run_id, event_id=event_id),
        )

    def callback(self, action: str, token: str, fields: dict[str, Any]) -> CallbackReceipt:
        if action == "heartbeat":
            return _guarded(
                "record a heartbeat", lambda: heartbeat_callback(self.store, token, heartbeat_id=fields["id"])
            )
        return _guarded(
            "complete a callback",
            lambda: complete_callback(
                self.store,
                token,
                output=fields.get("output"),
                error=fields.get("error"),
                completion_id=fields["id"],
            ),
        )

    def ended(self, run_id: str, workflow: str | None) -> bool:
        return _guarded("read a run", lambda: wait_for_end(self.store, run_id, 0, poll=0)) is not None


class _StarterBackend:
    def __init__(self, starter: StarterInvoker, workflow: str | None, stack: str | None) -> None:
        self.starter = starter
        self.workflow = workflow
        self.stack = stack

    def _which(self, workflow: str | None, verb: str) -> str:
        chosen = workflow or self.workflow
        if chosen is None:
            where = f" of stack {self.stack}" if self.stack else ""
            raise RunError(
                f"{verb} goes through the starter function of the run's workflow{where}: say which, "
                "with Client.aws(workflow=...) or workflow=..."
            )
        return chosen

    def definition(self, workflow: str | Workflow) -> Workflow:
        if isinstance(workflow, Workflow):
            return workflow
        raise RunError(
            f"the schedule of {workflow!r} is in its spec, which the starter does not hand out: pass the "
            "loaded spec (runtime.definition.loader.load_workflow) instead of its name"
        )

    def start(
        self, workflow: str | Workflow, input: Any, run_id: str | None, *, scheduled: bool = False
    ) -> StartedRun:
        if isinstance(workflow, Workflow):
            workflow = workflow.name  # the starter runs its own deployed definition
        request = {"input": input, **({} if run_id is None else {"run_id": run_id})}
        request |= {"scheduled": True} if scheduled else {}
        answer = self.starter.call(workflow, request)
        return StartedRun(run_id=answer["run_id"], created=bool(answer["created"]))

    def get(self, run_id: str, workflow: str | None) -> RunReport:
        answer = self.starter.call(self._which(workflow, "get"), {"action": "get", "run_id": run_id})
        return RunReport.from_json(answer["run"])

    def history(self, run_id: str, workflow: str | None) -> list[HistoryEntry]:
        request = {"action": "history", "run_id": run_id}
        answer = self.starter.call(self._which(workflow, "history"), request)
        return [HistoryEntry.from_json(entry) for entry in answer["history"]]

    def list(
        self,
        workflow: str | None,
        status: str | None,
        since: datetime | None,
        limit: int,
        after: PagePosition | None,
        deploy_id: str | None,
    ) -> list[RunSummary]:
        request: dict[str, Any] = {"action": "list", "limit": limit}
        if deploy_id is not None:
            request["deploy_id"] = deploy_id
        if status is not None:
            request["status"] = status
        if since is not None:
            request["since"] = since.isoformat()
        if after is not None:
            request["after"] = after.to_json()
        answer = self.starter.call(self._which(workflow, "list"), request)
        return [RunSummary.from_json(run) for run in answer["runs"]]

    def operate(self, workflow: str | None, action: str, run_id: str, **fields: Any) -> OperationReceipt:
        request = {"action": action, "run_id": run_id}
        request |= {name: value for name, value in fields.items() if value is not None and value is not False}
        answer = self.starter.call(self._which(workflow, action), request)
        return OperationReceipt(run_id=run_id, operation=action, sequence=0, created=bool(answer["created"]))

    def send_event(
        self, workflow: str, name: str, payload: Any, run_id: str | None, event_id: str | None
    ) -> EventReceipt:
        request: dict[str, Any] = {"action": "event", "name": name, "payload": payload}
        request |= {key: value for key, value in (("run_id", run_id), ("id", event_id)) if value is not None}
        return EventReceipt.from_json(self.starter.call(workflow, request))

    def callback(self, action: str, token: str, fields: dict[str, Any]) -> CallbackReceipt:
        try:
            workflow = token_attempt(token).workflow
        except ValueError as exc:
            raise OperationRefused(str(exc)) from None
        request = {"action": action, "token": token}
        request |= {key: value for key, value in fields.items() if value is not None or key == "output"}
        return CallbackReceipt.from_json(self.starter.call(workflow, request))

    def ended(self, run_id: str, workflow: str | None) -> bool:
        # The starter's get reports an ended run with a redrive pending as running: see
        # ``wait_for_end``; over the starter, the run document's status is what there is.
        return self.get(run_id, workflow).status in ENDED


def open_store(
    uri: str, *, database: str | None = None, environ: Mapping[str, str] | None = None
) -> MongoStore:
    """The runs on ``uri`` (database ``workflows`` unless ``database``), with their indexes
    ensured, as the functions' store sees them, signing what it records with the operator's
    status key when ``environ`` (or the database) gives one."""
    settings = StoreSettings() if database is None else StoreSettings(database=database)
    try:
        client = cached_client(uri)
        client.admin.command("ping")
        store = MongoStore(client, settings)
        store.ensure_indexes()
        return store.with_keys(operator_keys(store, os.environ if environ is None else environ))
    except (pymongo.errors.PyMongoError, pymongo.errors.ConfigurationError, ValueError) as exc:
        raise StoreUnavailable(f"cannot reach MongoDB: {exc}") from exc
    except StoreError as exc:
        raise StoreUnavailable(str(exc)) from exc
