"""The documents the runtime keeps in MongoDB, and the one place their shape is spelled.

Two collections (docs/architecture.md, "Documents"): ``state-machines`` holds one run document
per run, which the engine reads as a typed ``Run``; ``statuses`` is the append-only log of
``StatusEvent`` documents the Atlas trigger watches. A third, ``notifications``, holds the
notifier's claim on each status it reports. This module names the vocabulary of both
(``JobState``, ``RunState``, ``StatusName``), converts between the documents and the typed views
(``run_from_document`` / ``run_to_document``, ``status_from_document`` /
``StatusEvent.to_document``) and builds every field path a write sets or a filter checks, so no
other module spells a status or a field name.

Standard library only: the handlers import it inside Lambda.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from runtime.clock import as_utc
from runtime.definition.model import Workflow
from runtime.documents import ID, WORKFLOW
from runtime.documents.children import PARENT, ParentLink, parent_from_document
from runtime.documents.deployment import DEPLOY_ID, Deployment, deployment_from_document
from runtime.documents.failures import Exit, Failure, exit_from_document, failure_from_document
from runtime.documents.items import FanOut, Lane, fan_out_field, fan_out_from_document, lane_field
from runtime.documents.signatures import (
    AUTH,
    Signature,
    StatusKeys,
    attempt_slot,
    rejection,
    sign_with_attempt_key,
    sign_with_control_key,
    signature_from_document,
)
from runtime.errors import EventError
from runtime.statuses import (
    ATTEMPT_STATUSES,
    OPERATION_STATUSES,
    TERMINAL_JOB_STATUSES,
    WAITING_JOB_STATUSES,
    JobState,
    RunState,
    StatusName,
)

Document = dict[str, Any]
Fields = dict[str, Any]
"""Field path -> value: what a write sets, or what a conditional write requires."""


# -- the run document ------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class JobRecord:
    """What a run document holds for one of its jobs."""

    state: JobState = JobState.PENDING
    attempt: int = 0
    output: Any = None
    error: str | None = None
    caused_by: str | None = None
    """Key of the event whose handling dispatched or skipped this job (at this attempt)."""
    claimed_at: datetime | None = None
    """When that handling decided to dispatch this attempt."""
    finished_at: datetime | None = None
    """When the job's success was recorded."""
    invoked_attempt: int | None = None
    """The attempt whose invocation Lambda is known to have accepted; recorded only by decisions
    that dispatch many jobs, so a redelivery after a timeout does not start them all again."""
    first_attempt: int | None = None
    """The first attempt of the job's current retry budget: set by a redrive (attempts keep
    counting up across redrives, the budget starts afresh); None means 1."""
    due_at: datetime | None = None
    """While ``waiting``: when its timer fires."""
    output_ref: str | None = None
    """Where the output is kept when it is not inline (``runtime.store.outputs``): a large output, or
    a ``for_each`` job's array of item outputs."""
    fan_out: FanOut | None = None
    """A ``for_each`` job's counters and the items it has in flight (``runtime.documents.items``)."""
    started_at: datetime | None = None
    """When the job's first attempt of the current round was decided: what ``max_duration``
    counts from."""


@dataclass(frozen=True, kw_only=True)
class Run:
    """The engine's typed view of a run document."""

    run_id: str
    definition: Workflow
    """The snapshot of the compiled definition taken when the run started."""
    input: Any
    state: RunState
    phase: str
    """The current phase."""
    jobs: Mapping[str, JobRecord]
    completed_by: Mapping[str, str] = field(default_factory=dict)
    """Phase name -> key of the event that completed it."""
    finished_by: str | None = None
    """Key of the event that ended the run."""
    error: str | None = None
    """Why the run failed, or that it was cancelled (and why)."""
    redrives: int = 0
    """Redrives applied so far: the run's round. Run-level statuses carry it as their
    ``attempt``, so each round's start and end are statuses of their own."""
    expire_at: datetime | None = None
    """When MongoDB's TTL monitor deletes the ended run (the spec's ``retention_days``)."""
    deadline: datetime | None = None
    """When the run deadline of this round fires (the spec's ``timeout``)."""
    failure: Failure | None = None
    """Set while the failure handlers run (and kept once the run has ended after them)."""
    exit: Exit | None = None
    """Set while the exit handlers run (and kept once the run has ended after them)."""
    deployment: Deployment | None = None
    """The function version each job invokes, recorded at start (None: the unqualified names)."""
    concurrency_key: str | None = None
    """The run's value of its workflow's ``concurrency.key`` (``runtime.documents.slots``);
    None: the workflow has no ``concurrency``."""
    priority: int = 0
    """The run's ``priority``: queued runs start highest first."""
    arrival: int = 0
    """The run's place in its key's arrivals: queued runs of one rank start in this order."""
    rank: int = 0
    """The run's place in its key's queue, its priority aged (``runtime.engine.queue``): queued
    runs start lowest rank first."""
    version: int = 0
    """Incremented by every write; a write planned from this view is guarded by it."""
    stored_bytes: int = 0
    """The BSON size of the document this view was read from (0 when not read from a store):
    what a write may still add before MongoDB refuses the document."""
    created_at: datetime | None = None
    """When the run started (its document was inserted): where its duration and trace begin."""
    parent: ParentLink | None = None
    """The parent attempt a child run runs as (``runtime.documents.children``); None: a run of
    its own."""

    @property
    def workflow(self) -> str:
        return self.definition.name

    loaded_outputs: Mapping[str, Any] = field(default_factory=dict)
    """Outputs kept by reference that the orchestrator loaded for a ``when`` or ``for_each``
    to read (never written back, never put in an event)."""
    loaded_bytes: int = 0
    """The size as JSON of ``loaded_outputs``: what this view holds of the orchestrator's
    ``limits.OUTPUT_READ_MAX_BYTES``."""

    @property
    def outputs(self) -> dict[str, Any]:
        """Outputs of the jobs that succeeded: what their dependents get as ``results`` (None for
        an output kept by reference, which travels in ``references``)."""
        return {name: job.output for name, job in self.jobs.items() if job.state == JobState.SUCCEEDED}

    @property
    def references(self) -> dict[str, str]:
        """Where the outputs of succeeded jobs kept by reference are."""
        return {
            name: job.output_ref
            for name, job in self.jobs.items()
            if job.state == JobState.SUCCEEDED and job.output_ref is not None
        }


DEFINITION, INPUT, RUN_STATE, PHASE, JOBS, PHASES = (
    "definition",
    "input",
    "status",
    "phase",
    "jobs",
    "phases",
)
FINISHED_BY, ERROR, VERSION, CREATED_AT, UPDATED_AT, REDRIVES, EXPIRE_AT = (
    "finishedBy",
    "error",
    "version",
    "createdAt",
    "updatedAt",
    "redrives",
    "expireAt",
)
INPUT_TEXT = "inputText"
"""The run input as compact JSON (its first ``SEARCHABLE_INPUT_CHARS``): what the console's text
search reads, since MongoDB cannot match a pattern against a whole subdocument."""
SEARCHABLE_INPUT_CHARS = 2000
FAILURE = "failure"
EXIT = "exit"
DEPLOYMENT = "deployment"
DEPLOY_ID_FIELD = f"{DEPLOYMENT}.{DEPLOY_ID}"
"""The run's deploy id: what ``runs --deploy`` selects by."""
COMPLETED_BY, DEADLINE, WAKE_AT = "completedBy", "deadline", "wakeAt"
CONCURRENCY_KEY, PRIORITY, ARRIVAL, QUEUE_RANK = "concurrencyKey", "priority", "arrival", "queueRank"
"""A run that may queue for a slot: its key's value, its priority, its arrival and its rank."""
"""``wakeAt`` is the earliest due time among the run's timers, or earlier (never later): the
timer sweep's index. Decisions lower it (``$min``); only the sweep raises it again."""
_JOB_FIELDS = {
    "state": "state",
    "attempt": "attempt",
    "output": "output",
    "error": "error",
    "caused_by": "causedBy",
    "claimed_at": "claimedAt",
    "finished_at": "finishedAt",
    "invoked_attempt": "invokedAttempt",
    "first_attempt": "firstAttempt",
    "due_at": "dueAt",
    "output_ref": "outputRef",
    "fan_out": "fanOut",
    "started_at": "startedAt",
}
"""JobRecord attribute -> its field in the run document."""


def _job_from_document(document: Mapping[str, Any]) -> JobRecord:
    values = {name: document[key] for name, key in _JOB_FIELDS.items() if document.get(key) is not None}
    for timed in ("due_at", "started_at"):
        if timed in values:
            values[timed] = as_utc(values[timed])
    if "fan_out" in values:
        values["fan_out"] = fan_out_from_document(values["fan_out"])
    return JobRecord(**{**values, "state": JobState(document["state"])})


def _job_to_document(record: JobRecord) -> Document:
    """The job's fields that have a value: a pending job is just its state and attempt."""
    document: Document = {"state": record.state.value, "attempt": record.attempt}
    for name, key in _JOB_FIELDS.items():
        value = getattr(record, name)
        if key not in document and value is not None:
            document[key] = value.to_document() if isinstance(value, FanOut) else value
    return document


def run_from_document(document: Mapping[str, Any], stored_bytes: int = 0) -> Run:
    """Read a run document (of ``stored_bytes`` as BSON) as the engine's ``Run``."""
    # Imported here, not at the top: the definition model names its notify statuses from this
    # module, so a top-level import would be circular.
    return Run(
        run_id=document[ID],
        definition=Workflow.from_document(document[DEFINITION]),
        input=document.get(INPUT),
        state=RunState(document[RUN_STATE]),
        phase=document[PHASE],
        jobs={name: _job_from_document(job) for name, job in document[JOBS].items()},
        completed_by={name: phase[COMPLETED_BY] for name, phase in (document.get(PHASES) or {}).items()},
        finished_by=document.get(FINISHED_BY),
        error=document.get(ERROR),
        redrives=document.get(REDRIVES, 0),
        expire_at=document.get(EXPIRE_AT),
        deadline=as_utc(document.get(DEADLINE)),
        failure=failure_from_document(document.get(FAILURE)),
        exit=exit_from_document(document.get(EXIT)),
        deployment=deployment_from_document(document.get(DEPLOYMENT)),
        concurrency_key=document.get(CONCURRENCY_KEY),
        priority=document.get(PRIORITY, 0),
        arrival=document.get(ARRIVAL, 0),
        rank=document.get(QUEUE_RANK, 0),
        version=document.get(VERSION, 0),
        stored_bytes=stored_bytes,
        created_at=as_utc(document.get(CREATED_AT)),
        parent=parent_from_document(document.get(PARENT)),
    )


def run_to_document(run: Run, now: datetime) -> Document:
    """The run document of ``run``, as inserted at ``now``."""
    return {
        ID: run.run_id,
        WORKFLOW: run.workflow,
        DEFINITION: run.definition.to_document(),
        INPUT: run.input,
        INPUT_TEXT: json.dumps(run.input, default=str, separators=(",", ":"))[:SEARCHABLE_INPUT_CHARS],
        RUN_STATE: run.state.value,
        PHASE: run.phase,
        JOBS: {name: _job_to_document(job) for name, job in run.jobs.items()},
        PHASES: {name: {COMPLETED_BY: key} for name, key in run.completed_by.items()},
        FINISHED_BY: run.finished_by,
        ERROR: run.error,
        REDRIVES: run.redrives,
        FAILURE: None if run.failure is None else run.failure.to_document(),
        **({} if run.exit is None else {EXIT: run.exit.to_document()}),
        **({} if run.deployment is None else {DEPLOYMENT: run.deployment.to_document()}),
        **(
            {}
            if run.concurrency_key is None
            else {
                CONCURRENCY_KEY: run.concurrency_key,
                PRIORITY: run.priority,
                ARRIVAL: run.arrival,
                QUEUE_RANK: run.rank,
            }
        ),
        **({} if run.parent is None else {PARENT: run.parent.to_document()}),
        VERSION: run.version,
        CREATED_AT: now,
        UPDATED_AT: now,
    }


def run_filter(run_id: str) -> Document:
    """Selects one run document."""
    return {ID: run_id}


def attempt_projection(job: str) -> Document:
    """The fields of a run document the job wrapper reads before it runs an attempt of ``job``."""
    return {RUN_STATE: 1, f"{JOBS}.{job}": 1}


def attempt_state_from_document(document: Mapping[str, Any], job: str) -> tuple[RunState, JobRecord | None]:
    """The run's state and ``job``'s record, from a document read with ``attempt_projection``."""
    record = (document.get(JOBS) or {}).get(job)
    return RunState(document[RUN_STATE]), None if record is None else _job_from_document(record)


def touched(changes: Mapping[str, Any], now: datetime) -> Fields:
    """``changes`` with the run's ``updatedAt`` stamped: what a write to a run sets."""
    return {**changes, UPDATED_AT: now}


# Conditions and changes the engine plans writes with. Each returns field paths, so a write
# touches only what it means to and two writers never clobber each other's fields.


def at_version(version: int) -> Fields:
    """The run still is the version the writer read."""
    return {VERSION: version}


def run_is(state: RunState, phase: str | None = None) -> Fields:
    """The run is in ``state`` (and in ``phase``)."""
    return {RUN_STATE: state.value} | ({} if phase is None else {PHASE: phase})


def job_is(job: str, state: JobState, attempt: int | None = None) -> Fields:
    """``job`` is in ``state`` (at ``attempt``)."""
    fields = {_job_field(job, "state"): state.value}
    return fields if attempt is None else fields | {_job_field(job, "attempt"): attempt}


def job_set(job: str, record: JobRecord) -> Fields:
    """Replace everything recorded for ``job``."""
    return {f"{JOBS}.{job}": _job_to_document(record)}


def job_output_projection(job: str) -> Document:
    """What a job wrapper reads of a run for an output its event had no room for."""
    return {_job_field(job, "output"): 1}


def job_output_of(document: Mapping[str, Any], job: str) -> Any:
    """The output ``job_output_projection`` read."""
    return ((document.get(JOBS) or {}).get(job) or {}).get(_JOB_FIELDS["output"])


def jobs_invoked(attempts: Mapping[str, int]) -> Fields:
    """Lambda accepted the invocations of these jobs' attempts."""
    return {_job_field(job, "invoked_attempt"): attempt for job, attempt in attempts.items()}


def job_changed(job: str, **values: Any) -> Fields:
    """Set some of ``job``'s fields, named as ``JobRecord`` attributes."""
    return {_job_field(job, name): value for name, value in values.items()}


def phase_completed(phase: str, key: str) -> Fields:
    return {f"{PHASES}.{phase}": {COMPLETED_BY: key}}


def phase_entered(phase: str) -> Fields:
    return {PHASE: phase}


def run_ended(
    state: RunState, key: str, error: str | None = None, expire_at: datetime | None = None
) -> Fields:
    """The run reached ``state`` through the event ``key`` (with ``error``, when it failed or was
    cancelled; deleted at ``expire_at`` when the spec keeps runs for a while only)."""
    return (
        {RUN_STATE: state.value, FINISHED_BY: key}
        | ({} if error is None else {ERROR: error})
        | ({} if expire_at is None else {EXPIRE_AT: expire_at})
    )


def run_reopened(redrives: int, phase: str) -> Fields:
    """A redrive set the run going again, as its round ``redrives``, in ``phase`` (where it
    failed, also when the failure handlers ran since)."""
    return {
        RUN_STATE: RunState.RUNNING.value,
        FINISHED_BY: None,
        ERROR: None,
        EXPIRE_AT: None,
        REDRIVES: redrives,
        FAILURE: None,
        EXIT: None,
        PHASE: phase,
    }


def exit_started(exit: Exit, exit_phase: str) -> Fields:
    """The run goes into ``exit_phase`` to run its exit handlers, and ends as ``exit`` says after."""
    return {EXIT: exit.to_document(), PHASE: exit_phase}


def failure_started(failure: Failure, handlers_phase: str) -> Fields:
    """The run goes into ``handlers_phase`` to run its failure handlers, because of ``failure``."""
    return {FAILURE: failure.to_document(), PHASE: handlers_phase}


def no_failure_since(read: Failure | None) -> Fields:
    """What a decision that gives a job another attempt also needs: when the run had no failure
    as read, that its failure handlers have still not started, so no attempt of a job of the
    failed phases is dispatched once they have. (With a failure as read, the attempt is a
    handler's own retry: a failure never goes away while the run runs.)"""
    return {FAILURE: None} if read is None else {}


def deployment_set(deployment: Deployment | None) -> Fields:
    """Pin the run to ``deployment`` (None: to the functions by name)."""
    return {DEPLOYMENT: None if deployment is None else deployment.to_document()}


def run_upgraded(
    definition: Workflow, jobs: Mapping[str, JobRecord], deployment: Deployment | None
) -> Fields:
    """An ended run moved to ``definition``, its jobs' records as ``jobs``, pinned to
    ``deployment`` (None: pinned again at its next dispatch locally, or by name)."""
    return {
        DEFINITION: definition.to_document(),
        JOBS: {name: _job_to_document(record) for name, record in jobs.items()},
    } | deployment_set(deployment)


def not_pinned() -> Fields:
    """The run has no version map yet (matches a missing field too)."""
    return {DEPLOYMENT: None}


def in_round(redrives: int) -> Fields:
    """The run has had exactly ``redrives`` redrives (a run from before redrives has none)."""
    return {REDRIVES: redrives} if redrives else {REDRIVES: {"$in": [0, None]}}


def _job_field(job: str, name: str) -> str:
    return f"{JOBS}.{job}.{_JOB_FIELDS[name]}"


# -- status documents --------------------------------------------------------------------------

RUN_ID, STATUS, JOB, ATTEMPT, DATE = "runId", "status", "job", "attempt", "date"
OUTPUT, REQUEST_ID, REASON, INDEX, OUTPUT_REF = "output", "requestId", "reason", "index", "outputRef"

SLOT = "slot"
STATUS_KEY = (RUN_ID, PHASE, JOB, INDEX, STATUS, ATTEMPT, SLOT)
"""The unique key of ``statuses``: repeating a report of the same attempt (of the same item of a
``for_each`` job; ``index`` is missing, so null, on every other status) is a no-op. ``slot``
(``runtime.documents.signatures.attempt_slot``) keeps a writer without the attempt's key from
taking an attempt's place in it first; missing, so null, on unsigned statuses."""


def job_reports_only() -> Document:
    """The validator of ``statuses``: what a writer without MongoDB's ``bypassDocumentValidation``
    privilege may insert, a job attempt's reports (docs/architecture.md, "Trust"). The control
    plane's database roles hold the privilege and insert with it; a job's role does not, so the
    database itself refuses an operation or a run's status from a job's code. Checked on inserts
    only (``validationLevel: moderate``): the control plane's updates of run-level statuses (their
    expiry) pass as they did."""
    return {
        STATUS: {"$in": [status.value for status in ATTEMPT_STATUSES]},
        JOB: {"$type": "string"},
        ATTEMPT: {"$gte": 1},
    }


@dataclass(frozen=True, kw_only=True)
class StatusEvent:
    """One document of the ``statuses`` collection."""

    run_id: str
    workflow: str
    status: StatusName
    phase: str | None = None
    job: str | None = None
    """None on the statuses the engine records for the run as a whole."""
    attempt: int = 0
    """A job's attempt (from 1); on a run-level status, the run's round (``Run.redrives``), which
    is an operation's sequence number in the unique key."""
    output: Any = None
    error: str | None = None
    request_id: str | None = None
    """On ``started``: the Lambda request that claimed the attempt; on ``event_received``: the
    id of the event delivered."""
    reason: str | None = None
    """On a cancel: why, as the person who asked said it."""
    date: datetime | None = None
    """When it was recorded (set on the documents read back)."""
    index: int | None = None
    """The item of a ``for_each`` job this attempt ran for; None on every other status."""
    output_ref: str | None = None
    """On a success whose output is kept by reference (``runtime.store.outputs``), instead of ``output``."""
    auth: Signature | None = None
    """Who wrote it (``runtime.documents.signatures``): set by ``signed_by_attempt`` or
    ``signed_by_control``, read back from the document."""
    slot: str | None = None
    """A terminal report's part of its ``_id`` that only holders of the attempt's key can name."""

    @property
    def key(self) -> str:
        """Names the event inside its run; the engine stamps what it caused with this key so a
        redelivered event can finish what a crashed handler started."""
        if self.job is None:
            name = f"{self.status}:{self.phase}" if self.phase else str(self.status)
            return f"{name}:{self.attempt}" if self.attempt else name
        item = "" if self.index is None else f"[{self.index}]"
        return f"{self.status}:{self.job}{item}:{self.attempt}"

    def to_document(self, date: datetime) -> Document:
        """The document recorded in ``statuses`` at ``date``: the key fields, then ``output`` on a
        success, ``error``, ``requestId`` and ``reason`` when there is one."""
        document: Document = self._terminal_id()
        document |= {
            RUN_ID: self.run_id,
            WORKFLOW: self.workflow,
            PHASE: self.phase,
            JOB: self.job,
            STATUS: self.status.value,
            ATTEMPT: self.attempt,
            DATE: date,
        }
        if self.index is not None:
            document[INDEX] = self.index
        if self.output_ref is not None:
            document[OUTPUT_REF] = self.output_ref
        elif self.status in (
            StatusName.SUCCESS,
            StatusName.APPROVED,
            StatusName.EVENT_RECEIVED,
            StatusName.CALLBACK_COMPLETED,
        ):
            document[OUTPUT] = self.output
        if self.error is not None:
            document[ERROR] = self.error
        if self.request_id is not None:
            document[REQUEST_ID] = self.request_id
        if self.reason is not None:
            document[REASON] = self.reason
        if self.slot is not None:
            document[SLOT] = self.slot
        if self.auth is not None:
            document[AUTH] = self.auth.to_document()
        return document

    @property
    def terminal_id(self) -> str | None:
        """The ``_id`` of this status's document when it is a job attempt's terminal report (the
        only statuses whose ids are known before they are written); None for any other."""
        document_id = self._terminal_id().get(ID)
        return document_id if isinstance(document_id, str) else None

    def _terminal_id(self) -> Document:
        """A terminal report's ``_id`` is its attempt's: a second terminal report of the same
        attempt (a success racing an on-failure record) is refused as a duplicate key."""
        if self.status not in TERMINAL_JOB_STATUSES or self.job is None:
            return {}
        return {ID: terminal_id(self.run_id, self.job, self.attempt, self.index, self.slot)}

    @property
    def attempt_of(self) -> tuple[str, str, int, int | None] | None:
        """The attempt this status reports on, for its key; None for a status of the run."""
        if self.job is None or self.status not in ATTEMPT_STATUSES:
            return None
        return (self.run_id, self.job, self.attempt, self.index)

    def signed_by_attempt(self, attempt_key: str) -> StatusEvent:
        """This status as the attempt whose key this is writes it (the job wrapper)."""
        slotted = replace(self, slot=attempt_slot(attempt_key), auth=None)
        return replace(slotted, auth=sign_with_attempt_key(attempt_key, slotted.to_document(_UNSIGNED_DATE)))

    def signed_by_control(self, keys: StatusKeys) -> StatusEvent:
        """This status as the control plane or an operator writes it; a terminal report gets the
        slot of its attempt, so it races the attempt's own report for the same ``_id``; any other
        keeps its own (a heartbeat's id, a callback timer's due time: ``runtime.engine.callbacks``)."""
        attempt = self.attempt_of
        slot = attempt_slot(keys.attempt_key(*attempt)) if attempt is not None else self.slot
        slotted = replace(self, slot=slot, auth=None)
        return replace(slotted, auth=sign_with_control_key(keys, slotted.to_document(_UNSIGNED_DATE)))

    def rejection(self, keys: StatusKeys) -> str | None:
        """Why this status is not authentic (``runtime.documents.signatures``); None when it is."""
        return rejection(keys, self.to_document(_UNSIGNED_DATE), self.auth, self.status, self.attempt_of)


_UNSIGNED_DATE = datetime(1970, 1, 1, tzinfo=UTC)
"""Signatures do not cover the date a status is recorded at."""


def attempt_id(run_id: str, job: str, attempt: int, index: int | None = None) -> str:
    """Names one job attempt (of one item: ``index``) in ids; job names never hold a ``/``."""
    return f"{run_id}/{job}/{attempt}" if index is None else f"{run_id}/{job}[{index}]/{attempt}"


def terminal_id(
    run_id: str, job: str, attempt: int, index: int | None = None, slot: str | None = None
) -> str:
    """The ``_id`` of the one terminal report of a job attempt (with its ``slot`` when statuses
    are signed: ``runtime.documents.signatures.attempt_slot``)."""
    end = f"{attempt_id(run_id, job, attempt, index)}/end"
    return end if slot is None else f"{end}/{slot}"


def status_from_document(document: Mapping[str, Any], where: str = "status document") -> StatusEvent:
    """Read a ``statuses`` document, checking what the engine relies on; ``EventError`` says
    which field is wrong and how."""
    status = required(document, STATUS, str, where)
    if status not in StatusName.__members__.values():
        raise EventError(f"{where}: unknown status {status!r}")
    name = StatusName(status)
    job = optional_str(document, JOB, where)
    if name in ATTEMPT_STATUSES or name in WAITING_JOB_STATUSES or (name == StatusName.TIMER_FIRED and job):
        required(document, JOB, str, where)
        required(document, PHASE, str, where)
        attempt = required(document, ATTEMPT, int, where)
        if attempt < 1:
            raise EventError(f"{where}: attempt must be >= 1, got {attempt}")
    else:
        if job is not None:
            raise EventError(f"{where}: '{name}' is about the whole run, so it has no job (got {job!r})")
        attempt = document.get(ATTEMPT) or 0
        if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 0:
            raise EventError(f"{where}: attempt of a run-level status is a round >= 0, got {attempt!r}")
    date = document.get(DATE)
    index = document.get(INDEX)
    if index is not None and (isinstance(index, bool) or not isinstance(index, int) or index < 0):
        raise EventError(f"{where}: index must be an item's index >= 0, got {index!r}")
    return StatusEvent(
        run_id=required(document, RUN_ID, str, where),
        workflow=required(document, WORKFLOW, str, where),
        status=name,
        phase=optional_str(document, PHASE, where),
        job=job,
        attempt=attempt,
        output=document.get(OUTPUT),
        error=optional_str(document, ERROR, where),
        request_id=optional_str(document, REQUEST_ID, where),
        reason=optional_str(document, REASON, where),
        date=date if isinstance(date, datetime) else None,
        index=index,
        output_ref=optional_str(document, OUTPUT_REF, where),
        auth=signature_from_document(document.get(AUTH)),
        slot=optional_str(document, SLOT, where),
    )


def status_rejected(status: StatusEvent, reason: str) -> StatusEvent:
    """The record of a status rejected as not authentic: about the run, with what was rejected
    and why; one per rejected document (a redelivery of it records nothing more)."""
    digest = hashlib.sha256(json.dumps([status.key, status.auth and status.auth.mac]).encode()).hexdigest()
    return StatusEvent(
        run_id=status.run_id,
        workflow=status.workflow,
        status=StatusName.STATUS_REJECTED,
        error=f"rejected '{status.key}': {reason}",
        slot=digest[:20],
    )


def required(document: Mapping[str, Any], name: str, kind: type | tuple[type, ...], where: str) -> Any:
    """The value of field ``name``, which must be there and of type ``kind`` (never a bool)."""
    if name not in document or document[name] is None:
        raise EventError(f"{where}: missing field '{name}'")
    value = document[name]
    if isinstance(value, bool) or not isinstance(value, kind):
        raise EventError(f"{where}: field '{name}' has the wrong type ({type(value).__name__}: {value!r})")
    return value


def optional_str(document: Mapping[str, Any], name: str, where: str) -> str | None:
    value = document.get(name)
    if value is not None and not isinstance(value, str):
        raise EventError(f"{where}: field '{name}' must be a string, got {value!r}")
    return value


def deadline_set(deadline: datetime) -> Fields:
    return {DEADLINE: deadline}


def wake_at(due: datetime) -> Fields:
    """A timer due at ``due``: written with ``$min``, so the earliest of all stays (a missing
    field counts as later than any time; a null would count as earlier, so none is ever set)."""
    return {WAKE_AT: due}


def timers_due_query(now: datetime, workflow: str | None) -> Document:
    """Selects the running runs with a timer due at ``now`` (the index ``running_by_wake``)."""
    query: Document = {RUN_STATE: RunState.RUNNING.value, WAKE_AT: {"$lte": now}}
    return query if workflow is None else query | {WORKFLOW: workflow}


def next_wake_query(workflow: str | None) -> Document:
    """Selects the running runs that have a timer at all."""
    query: Document = {RUN_STATE: RunState.RUNNING.value, WAKE_AT: {"$exists": True}}
    return query if workflow is None else query | {WORKFLOW: workflow}


# -- queries of the store -----------------------------------------------------------------


def stale_runs_query(updated_before: datetime, workflow: str | None) -> Document:
    """Selects the running runs (of ``workflow``) not written since ``updated_before``."""
    query: Document = {RUN_STATE: RunState.RUNNING.value, UPDATED_AT: {"$lt": updated_before}}
    return query if workflow is None else query | {WORKFLOW: workflow}


def running_deployments_query(workflow: str) -> tuple[Document, Document]:
    """Selects the running runs of ``workflow`` (and the queued ones, pinned to their versions
    when they were inserted), and projects their version maps."""
    states = [RunState.QUEUED.value, RunState.RUNNING.value]
    return {RUN_STATE: {"$in": states}, WORKFLOW: workflow}, {DEPLOYMENT: 1}


def deployment_of_document(document: Mapping[str, Any]) -> Deployment | None:
    """The version map of a run document read with ``running_deployments_query``'s projection."""
    return deployment_from_document(document.get(DEPLOYMENT))


def run_statuses_query(run_id: str, *, items: bool = True) -> Document:
    """Selects the run's statuses; without ``items``, not the reports of a fan-out's items."""
    return {RUN_ID: run_id} if items else {RUN_ID: run_id, INDEX: {"$exists": False}}


def operations_query(since: datetime, workflow: str | None) -> Document:
    """Selects the operations recorded since ``since``: one branch per operation, so each reads
    its own partial index."""
    query: Document = {
        "$or": [{STATUS: status.value, DATE: {"$gte": since}} for status in OPERATION_STATUSES]
    }
    return query if workflow is None else query | {WORKFLOW: workflow}


def expiry_update(expire_at: datetime | None) -> Document:
    """Gives a document the expiry ``expire_at``, or (None) takes its expiry off."""
    return {"$unset": {EXPIRE_AT: ""}} if expire_at is None else {"$set": {EXPIRE_AT: expire_at}}


def without_expiry(expire_at: datetime | None) -> Document:
    """What a write of ``expire_at`` selects besides: only what has no expiry yet when one is set
    (so stamping again touches a late document alone), everything when it is taken off."""
    return {} if expire_at is None else {EXPIRE_AT: {"$exists": False}}


def lane_moved(job: str, lane: int, to: Lane, counts: Mapping[str, int], now: datetime) -> dict[str, Any]:
    """The update that puts ``to`` in the lane and adds ``counts`` to the job's counters
    (``done``, ``failed``, ``notStarted``); a lane that waits out a retry delay lowers the run's
    ``wakeAt`` to its due time, so the timer sweep finds it."""
    update: dict[str, Any] = {"$set": {lane_field(job, lane): to.to_document(), UPDATED_AT: now}}
    increments = {fan_out_field(job, name): count for name, count in counts.items() if count}
    update |= {"$inc": increments} if increments else {}
    return update | ({"$min": wake_at(to.due_at)} if to.due_at is not None else {})
