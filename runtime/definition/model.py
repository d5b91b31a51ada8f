"""The workflow IR: a frozen, typed model every consumer reads.

The spec loader (build time) produces it from YAML, JSON or the seed's state-machine object;
the constructs synthesize from it; the engine snapshots it into each run document with
``to_document`` and reads it back with ``from_document``. Nothing downstream reads raw spec dicts.

This module is imported inside Lambda: standard library only.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from runtime.definition.model_limits import JobConcurrency, RateLimit, limits_from_document
from runtime.statuses import StatusName

FUNCTION_NAME_MAX = 64
"""AWS Lambda's limit on a function name."""

JOB_FUNCTION_INFIX = "-job-"
"""Job functions are named ``<workflow>-job-<job>``; the orchestrator's IAM policy is scoped to
the ``<workflow>-job-*`` prefix, so it never grows with the number of jobs."""


def job_function_prefix(workflow: str) -> str:
    """The name prefix shared by every job function of ``workflow``."""
    return f"{workflow}{JOB_FUNCTION_INFIX}"


def job_function_name(workflow: str, job: str) -> str:
    """The physical Lambda function name of one job."""
    return f"{job_function_prefix(workflow)}{job}"


HANDLERS_PHASE = "on_failure"
"""The phase the failure handlers (the spec's ``on_failure`` jobs) run in: a run that fails, or
is cancelled, enters it and ends once every handler has finished."""

EXIT_PHASE = "on_exit"
"""The phase the exit handlers (the spec's ``on_exit`` jobs) run in: a run that ends, however it
ends, enters it (after its failure handlers) and ends so once every exit handler has finished."""

JOINS = (
    "all",
    "any",
    "all_done",
    "one_success",
    "one_failed",
    "all_failed",
    "none_failed",
    "none_failed_min_one_success",
)
"""A job's ``join``: how the jobs in its ``after`` must have ended for it to run
(``runtime.engine.joins``). ``all``: every one succeeded; ``any``: all finished and at least one
succeeded; ``all_done``: all finished, however; ``one_success`` / ``one_failed``: as soon as one
has succeeded / failed, without waiting for the others; ``all_failed``: every one failed;
``none_failed``: none failed (skipped ones are fine); ``none_failed_min_one_success``: none failed
and at least one succeeded."""

EARLY_JOINS = ("one_success", "one_failed")
"""Joins that start the job as soon as one job in its ``after`` has ended so, while the others
still run."""

CATCHING_JOINS = ("all_done", "one_success", "one_failed", "all_failed")
"""Joins that may run the job although a job in its ``after`` failed: when one holds with that
failure, the failure is caught (it fails neither the run nor starts ``on_failure``)."""

RESULTS = ("after", "earlier")
"""What a job's code gets as ``results`` (the spec's ``results``): ``after``, the outputs of the
jobs in its ``after``; ``earlier``, those and the outputs of every job of the earlier phases, as
its ``when`` reads them."""

JOB_ASYNC_RETRIES = 0
"""Lambda's own retries of a job invocation that failed (the deployed functions' setting, and
the local runner's): none, so an invocation that dies goes straight to the on-failure
destination and counts as a failed attempt under the job's ``retries``. A retry is then always a
new attempt, and ``retries: N`` runs a job's code at most N + 1 times."""


FAN_OUT_KEYS = ("for_each", "max_concurrency", "tolerated_failures")

INVOKE_KEYS = ("invoke", "payload")
"""An ``invoke`` job's keys in the run's snapshot (``local`` is this machine's path, as ``code``)."""
"""A ``for_each`` job's settings, in the snapshot only when the job has ``for_each``."""


def _frozen_mapping(value: Mapping[str, str] | None) -> Mapping[str, str]:
    return MappingProxyType(dict(value or {}))


@dataclass(frozen=True, kw_only=True)
class Permission:
    """One IAM statement (Allow) the spec adds to a job's own role, and to no other."""

    actions: tuple[str, ...]
    """``service:Action`` names; a wildcard may complete an action's name (``s3:Get*``)."""
    resources: tuple[str, ...]
    """ARNs the actions apply to; a wildcard may complete the resource part (``.../prefix/*``)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "actions", tuple(self.actions))
        object.__setattr__(self, "resources", tuple(self.resources))

    def to_document(self) -> dict[str, list[str]]:
        return {"actions": list(self.actions), "resources": list(self.resources)}


JITTER_MODES = ("full", "none")
"""``retry.jitter``: ``full`` draws the wait uniformly between 0 and the computed delay (so many
runs retrying one failing source spread out); ``none`` waits the computed delay."""

WAIT_MAX_SECONDS = 31_536_000
"""A ``wait`` job waits at most a year (EventBridge Scheduler's and the Step Functions' bound)."""


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """When and how soon a failed attempt is tried again (``retry`` in a spec; ``retries: N`` is
    ``retry: {max: N}``)."""

    max: int = 2
    """Extra attempts after a failed one (0-10); attempts count from 1."""
    delay: float = 0
    """Seconds before the first retry; 0 retries at once."""
    backoff: float = 2.0
    """Each further retry waits this many times longer."""
    max_delay: float = 300
    """No wait is longer than this many seconds."""
    jitter: str = "full"
    """One of ``JITTER_MODES``."""
    on: tuple[str, ...] = ()
    """Error type names a failure must have to be retried; empty: every type."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "on", tuple(self.on))

    def to_document(self) -> dict[str, Any]:
        return {
            "max": self.max,
            "delay": self.delay,
            "backoff": self.backoff,
            "max_delay": self.max_delay,
            "jitter": self.jitter,
            "on": list(self.on),
        }

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> RetryPolicy:
        return cls(**{**document, "on": tuple(document.get("on", ()))})


@dataclass(frozen=True, kw_only=True)
class Tolerance:
    """``tolerated_failures: {count, percent}``: a count and a percentage of the items together,
    whichever is reached first fails the job (Step Functions' ``ToleratedFailureCount`` and
    ``ToleratedFailurePercentage``)."""

    count: int | None = None
    percent: int | None = None

    def to_document(self) -> dict[str, int]:
        return {
            key: value
            for key, value in (("count", self.count), ("percent", self.percent))
            if value is not None
        }

    def __str__(self) -> str:
        parts = [
            f"{self.count}" if self.count is not None else "",
            f"{self.percent}%" if self.percent is not None else "",
        ]
        return " or ".join(part for part in parts if part)


@dataclass(frozen=True, kw_only=True)
class Approval:
    """A job that waits for a person's answer (``approve`` / ``reject``) instead of running code."""

    timeout: int
    """Seconds to wait for the answer; none by then fails the job with ``approval timed out``."""
    message: str = ""
    """What the person is asked (in the ``approval_requested`` notification)."""


DEFAULT_EVENT_RETENTION = 86400
"""Seconds an event sent to a workflow is kept for an event job that starts waiting later: one
day unless the job's ``event.retention`` says otherwise."""


@dataclass(frozen=True, kw_only=True)
class EventWait:
    """A job that waits for an event sent to its workflow or run (``send-event``) instead of
    running code; the event's payload is its output."""

    name: str
    """The event's name, as the sender gives it."""
    timeout: int
    """Seconds to wait; no matching event by then fails the attempt with ``event timed out``."""
    match: str | None = None
    """JMESPath over ``{input, results, event}`` (``event``: the payload): an event counts only when
    it is true. None: any event of the name."""
    retention: int = DEFAULT_EVENT_RETENTION
    """How long before the job starts waiting an event may have been sent and still count."""

    def to_document(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "timeout": self.timeout,
            "retention": self.retention,
            **({} if self.match is None else {"match": self.match}),
        }


@dataclass(frozen=True, kw_only=True)
class Callback:
    """A job completed from outside through a callback token bound to its attempt
    (``runtime.service.callbacks``): its code hands the token out and the attempt then waits, or,
    without code, the attempt waits at once and operators see the token."""

    timeout: int
    """Seconds to wait for the token's completion (from when the code returned, or the job
    started without code); a heartbeat starts them again. None by then fails the attempt with
    ``callback timed out``."""
    runs_code: bool = False
    """Whether the job's code runs first (``code`` is build-time only: the snapshot keeps this)."""

    def to_document(self) -> dict[str, Any]:
        return {"timeout": self.timeout, "runs_code": self.runs_code}


@dataclass(frozen=True, kw_only=True)
class ChildWorkflow:
    """A job that runs another workflow of the same app as its attempt (the spec's ``workflow:``):
    the child run's output is the job's output (``runtime.service.children``)."""

    name: str
    """The workflow the child run runs."""
    input: str | None = None
    """JMESPath over ``{input, results}`` giving the child's run input; None: the parent's input."""

    def to_document(self) -> dict[str, Any]:
        return {"name": self.name, "input": self.input}


@dataclass(frozen=True, kw_only=True)
class ServiceCall:
    """An AWS service call a job makes without code (``runtime.definition.call.CALLS``)."""

    service: str
    action: str
    resource: str
    """The queue (URL or ARN), topic, event bus, function or state machine it acts on."""
    params: str | None = None
    """JMESPath over ``{input, results, item, index}``: the call's other parameters."""

    def to_document(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "action": self.action,
            "resource": self.resource,
            "params": self.params,
        }


@dataclass(frozen=True, kw_only=True)
class HttpRequest:
    """What an ``http`` job sends: a request to ``url`` (whose ``{...}`` parts are JMESPath over
    ``{input, results, item, index}``), its answer the job's output."""

    url: str
    method: str = "GET"
    headers: Mapping[str, str] = field(default_factory=lambda: _frozen_mapping(None))
    body: str | None = None
    """JMESPath over ``{input, results, item, index}``: the JSON body; None: no body."""
    secret: str | None = None
    """A Secrets Manager secret (name or ARN) whose string is sent as ``secret_header``."""
    secret_header: str = "Authorization"
    timeout: float = 30.0
    """Seconds to wait for the answer (within the job's own ``timeout``)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "headers", _frozen_mapping(self.headers))

    def to_document(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "method": self.method,
            "headers": dict(self.headers),
            "body": self.body,
            "secret": self.secret,
            "secret_header": self.secret_header,
            "timeout": self.timeout,
        }

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> HttpRequest:
        return cls(**{key: document[key] for key in cls.__dataclass_fields__ if key in document})


@dataclass(frozen=True, kw_only=True)
class Job:
    """One unit of work: a Lambda function in the cloud, an in-process call locally."""

    name: str
    phase: str
    after: tuple[str, ...] = ()
    """Jobs (of this phase or an earlier one) this job waits for and gets the outputs of; how they
    must have ended is the ``join``."""
    join: str = "all"
    """How the jobs in ``after`` must have ended for this job to run (see ``JOINS``); else it is
    ``skipped``, or ``upstream_failed`` when one of them failed."""
    depends: str | None = None
    """JMESPath over ``{"jobs": {<after job>: {state, error, type, output}}}`` that decides, in
    place of ``join``, whether the job runs once every job in ``after`` has finished
    (``runtime.engine.joins.depends_outcome``)."""
    results: str = "after"
    """What the job's code gets as ``results`` (see ``RESULTS``); its ``when`` and ``for_each``
    read the earlier phases' outputs either way."""
    allow_failure: bool | tuple[str, ...] = False
    """When the last attempt fails, the run goes on: the job is ``failed`` and counts as failed
    for the jobs after it. True: whatever the error; error type names: only a failure of one of
    those types (``allows_failure``)."""
    fails_run: bool = False
    """An exit handler's (``on_exit``): when it fails for good, a run that was going to succeed
    ends ``failed`` instead (Airflow's teardown ``on_failure_fail_dagrun``); False: its failure
    is recorded and the run ends as it was going to."""
    memory: int = 256
    """Lambda memory in MB (128-10240)."""
    timeout: int = 60
    """Lambda timeout in seconds (1-900)."""
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    """When a failed attempt is tried again, and after how long."""
    max_duration: int | None = None
    """Seconds the job may take across all its attempts and the delays between them, from its
    first attempt: a failed attempt gets no other once it is past, or once the next would start
    past it; the job then fails with ``max duration exceeded``. None: no bound."""
    wait: int | None = None
    """A wait job (no code): succeeds this many seconds after it becomes ready."""
    wait_until: str | None = None
    """A wait job (no code) that succeeds at the time this JMESPath over ``{"input", "results"}``
    gives (ISO 8601 with its UTC offset) when it becomes ready: the spec's ``wait: {until}``."""
    approval: Approval | None = None
    """An approval job (no code): succeeds or fails on a person's answer."""
    event: EventWait | None = None
    """An event job (no code): succeeds with the payload of the event it waits for."""
    callback: Callback | None = None
    """A callback job: succeeds or fails when its attempt's token is completed from outside."""
    code: str | None = None
    """Handler file or folder, resolved to an absolute POSIX path by the loader; ``None`` runs
    the generated stub."""
    env: Mapping[str, str] = field(default_factory=lambda: _frozen_mapping(None))
    """Extra environment variables for the job's function."""
    when: str | None = None
    """JMESPath condition over ``{"input": ..., "results": ...}``; false skips the job."""
    permissions: tuple[Permission, ...] = ()
    """Statements the job's role gets on top of what every job's role has."""
    for_each: str | None = None
    """JMESPath over ``{"input", "results"}`` giving the array of items the job runs once for
    each (``runtime.engine.fanout``); None: the job runs once."""
    max_concurrency: int = 100
    """Items of a ``for_each`` job in flight at once (1-1000)."""
    tolerated_failures: int | str | Tolerance = 0
    """Items whose last attempt may fail before a ``for_each`` job fails: a count, ``"P%"`` of
    the items, or both (``Tolerance``: whichever is reached first)."""
    invoke: str | None = None
    """An existing Lambda function (ARN or name, with its qualifier) the job calls instead of
    running code (``runtime.service.invoke_job``)."""
    payload: str | None = None
    """What an ``invoke`` job sends: a JMESPath over ``{input, results, item, index}``; None: the
    job's event."""
    local: str | None = None
    """An ``invoke`` job's stand-in on this machine: a handler file or folder, resolved like ``code``."""
    http: HttpRequest | None = None
    """A request the job sends instead of running code (``runtime.service.http_job``)."""
    call: ServiceCall | None = None
    """An AWS service call the job makes instead of running code (``runtime.service.call_job``)."""
    child_workflow: ChildWorkflow | None = None
    """The workflow the job runs as a child run instead of running code (the spec's ``workflow:``)."""
    concurrency: JobConcurrency | None = None
    """Attempts of this job in flight at once across every run (``runtime.service.job_limits``)."""
    rate_limit: RateLimit | None = None
    """Attempts of this job started per period across every run."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "after", tuple(self.after))
        if not isinstance(self.allow_failure, bool):
            object.__setattr__(self, "allow_failure", tuple(self.allow_failure))
        if isinstance(self.tolerated_failures, Mapping):
            object.__setattr__(self, "tolerated_failures", Tolerance(**self.tolerated_failures))
        object.__setattr__(self, "env", _frozen_mapping(self.env))
        object.__setattr__(self, "permissions", tuple(self.permissions))

    def allows_failure(self, error_type: str) -> bool:
        """Whether a final failure of this type lets the run go on (``allow_failure``)."""
        if isinstance(self.allow_failure, bool):
            return self.allow_failure
        return error_type in self.allow_failure

    @property
    def retries(self) -> int:
        """Extra attempts after a failed one (``retry.max``)."""
        return self.retry.max

    @property
    def max_attempts(self) -> int:
        return self.retries + 1

    @property
    def runs_code(self) -> bool:
        """False for wait, approval, event and child workflow jobs, and callback jobs without
        code: no function of theirs runs."""
        waits = self.wait is not None or self.wait_until is not None or self.approval is not None
        waits_for_callback = self.callback is not None and not self.callback.runs_code
        return not (waits or self.event is not None or self.child_workflow is not None or waits_for_callback)


@dataclass(frozen=True, kw_only=True)
class Phase:
    name: str
    jobs: tuple[Job, ...]
    next: str | None = None
    """The phase that follows; ``None`` means the next one in declaration order (or the end)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "jobs", tuple(self.jobs))

    def job(self, name: str) -> Job:
        for job in self.jobs:
            if job.name == name:
                return job
        raise KeyError(name)

    def local_after(self, job: Job) -> tuple[str, ...]:
        """The jobs of this phase ``job`` waits for (the others ran in earlier phases)."""
        names = {candidate.name for candidate in self.jobs}
        return tuple(name for name in job.after if name in names)

    @property
    def roots(self) -> tuple[Job, ...]:
        """Jobs that start as soon as the phase starts: they wait for no job of this phase."""
        return tuple(job for job in self.jobs if not self.local_after(job))

    def dependents(self, name: str) -> tuple[Job, ...]:
        """Jobs of this phase that list ``name`` in ``after``."""
        return tuple(job for job in self.jobs if name in job.after)


@dataclass(frozen=True, kw_only=True)
class Alarms:
    """The spec's ``alarms``: thresholds on the workflow's own metrics (``runtime.aws.metrics``);
    None sets no alarm of that kind."""

    failure_rate: float | None = None
    """Share (0 to 1) of the runs ended in an hour that failed, past which the alarm fires."""
    duration_p99: int | None = None
    """Seconds the hourly 99th percentile of the run duration may reach before the alarm fires."""


TRACE_EXPORTERS = ("none", "otlp", "xray")
"""Where the functions export their spans (``tracing.exporter``): nowhere; over OTLP/HTTP to an
endpoint; to AWS X-Ray through the AWS Distro for OpenTelemetry collector layer."""


@dataclass(frozen=True, kw_only=True)
class Tracing:
    """The spec's ``tracing`` (else the app's default, CDK context ``tracing``): where the
    workflow's functions export the runs' spans. Build-time only: it chooses the functions'
    layers, variables and permissions."""

    exporter: str = "none"
    """One of ``TRACE_EXPORTERS``."""
    endpoint: str | None = None
    """``otlp``'s: the OTLP/HTTP endpoint's base URL (spans go to ``<endpoint>/v1/traces``)."""


@dataclass(frozen=True, kw_only=True)
class Notify:
    on: tuple[str, ...] = (
        StatusName.FAILED.value,
        StatusName.WORKFLOW_SUCCEEDED.value,
        StatusName.WORKFLOW_FAILED.value,
    )
    """Statuses that produce a notification (see ``NOTIFY_EVENTS``)."""
    email: tuple[str, ...] = ()
    """Addresses subscribed to the workflow's SNS topic."""
    slack_webhook_secret: str | None = None
    """Name or ARN of a Secrets Manager secret holding a Slack incoming-webhook URL."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "on", tuple(self.on))
        object.__setattr__(self, "email", tuple(self.email))


ON_LIMIT = ("queue", "skip", "cancel_oldest")
"""What a run started over its workflow's ``concurrency`` limit does: wait ``queued`` for a slot,
end at once (cancelled, saying why), or have the oldest running run of its key cancelled and take
its slot when that run has ended."""

DELIVERY_MODES = ("fast", "economy")
"""How a job's report reaches the orchestrator in the cloud (the spec's ``delivery``, the CDK
context's ``delivery``): ``fast``, the job function hands the recorded report's id to the
orchestrator itself and the Atlas trigger's delivery is the backstop; ``economy``, the trigger
alone."""

DEFAULT_DELIVERY = "fast"
"""The app's default when neither spec nor context says: the fast path's modelled step is 75 to
80 ms shorter at the median (the EventBridge hop less an async invoke) for one more orchestrator
invocation per job (benchmarks/README.md, "Step latency")."""


SCHEDULE_OVERLAP = ("skip", "buffer_one", "allow", "cancel_other")
"""What a scheduled run does while an earlier scheduled run of its workflow has not ended: end at
once (cancelled, saying why), wait ``queued`` (one at most; more are skipped), start anyway, or
have the running one cancelled and start once it has ended."""


@dataclass(frozen=True, kw_only=True)
class RunConcurrency:
    """At most ``limit`` runs of the workflow run at once: per value of ``key`` (JMESPath over
    ``{input}``), or across all runs when there is no key."""

    limit: int
    key: str | None = None

    def to_document(self) -> dict[str, Any]:
        return {"limit": self.limit, "key": self.key}


@dataclass(frozen=True, kw_only=True)
class Workflow:
    """A compiled workflow definition: the IR every consumer takes."""

    name: str
    phases: tuple[Phase, ...]
    description: str = ""
    notify: Notify = field(default_factory=Notify)
    schedule: str | None = None
    """``cron(...)`` or ``rate(...)``: an EventBridge schedule that starts runs."""
    schedule_input: Mapping[str, Any] | None = None
    """Run input for scheduled runs (each also gets ``contracts.SCHEDULED_TIME``)."""
    schedule_timezone: str | None = None
    """The IANA time zone ``schedule`` is in; None: UTC."""
    schedule_overlap: str = "skip"
    """One of ``SCHEDULE_OVERLAP``: scheduled runs of the workflow, one at a time unless ``allow``."""
    on_failure: Phase | None = None
    """The failure handlers: jobs run (in phase ``HANDLERS_PHASE``) when the run fails or is
    cancelled, before it ends so."""
    on_exit: Phase | None = None
    """The exit handlers: jobs run (in phase ``EXIT_PHASE``) when the run ends, however it ends,
    after the failure handlers; the run ends as it would have once they have finished."""
    input_schema: Mapping[str, Any] | None = None
    """A JSON Schema (2020-12) the run input must match; checked where runs start."""
    timeout: int | None = None
    """Seconds a run may take from its start (a redrive starts it again); past that it fails
    with ``run deadline exceeded``, unless its failure handlers have started (they run to their
    end). None: no deadline."""
    retention_days: int | None = None
    """Days an ended run and its statuses are kept before MongoDB deletes them; None keeps them."""
    source: str | None = None
    """The spec file this was loaded from (absolute POSIX path), for messages and ``code``."""
    shared: str | None = None
    """A folder (absolute POSIX path) of modules every job's code may import: staged beside each
    job's code, put on ``sys.path`` locally. Build-time only, like ``code``."""
    alarms: Alarms = field(default_factory=Alarms)
    """The spec's alarm thresholds: build-time only (the stack's alarms), not in the snapshot."""
    tracing: Tracing | None = None
    """The spec's ``tracing``; None: the app's default. Build-time only, not in the snapshot."""
    concurrency: RunConcurrency | None = None
    """How many runs may run at once (per key); None: no limit."""
    priority: str | None = None
    """JMESPath over ``{input}`` giving an integer: queued runs start highest first (then oldest
    first); None: every run has priority 0."""
    on_limit: str = "queue"
    """One of ``ON_LIMIT``."""
    delivery: str | None = None
    """One of ``DELIVERY_MODES``: how a job's report reaches the orchestrator in the cloud; None
    takes the app's default (context ``delivery``). Build-time only, like ``alarms``."""
    output: str | None = None
    """JMESPath over ``{input, results}`` giving the run's output when it runs as a child (the
    parent job's output); None: the results of its last phase's jobs."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "phases", tuple(self.phases))

    def phase(self, name: str) -> Phase:
        """A phase by name, the failure handlers' ``HANDLERS_PHASE`` included."""
        for phase in self.all_phases():
            if phase.name == name:
                return phase
        raise KeyError(name)

    def all_phases(self) -> tuple[Phase, ...]:
        """The phases, then the failure handlers' phase and the exit handlers' when there are."""
        return self.phases + tuple(phase for phase in (self.on_failure, self.on_exit) if phase is not None)

    def next_phase(self, name: str) -> Phase | None:
        """The phase that runs after ``name``, or ``None`` when ``name`` is the last (the failure
        handlers' phase is last: the run ends after it)."""
        if name in (HANDLERS_PHASE, EXIT_PHASE):
            return None
        phase = self.phase(name)
        if phase.next is not None:
            return self.phase(phase.next)
        index = self.phases.index(phase)
        return self.phases[index + 1] if index + 1 < len(self.phases) else None

    def phase_order(self) -> tuple[Phase, ...]:
        """Phases in run order, following ``next``; the loader guarantees no loops."""
        order: list[Phase] = []
        phase: Phase | None = self.phases[0] if self.phases else None
        while phase is not None and phase not in order:
            order.append(phase)
            phase = self.next_phase(phase.name)
        return tuple(order)

    @property
    def uses_timers(self) -> bool:
        """Whether a run of this workflow ever waits for a time: a delayed retry, a wait or an
        approval job, a callback's timeout, a run deadline. Only such a workflow gets the cloud's
        timer schedule."""
        return self.timeout is not None or any(
            job.retry.delay > 0
            or (not job.runs_code and job.child_workflow is None)
            or job.callback is not None
            for job in self.jobs()
        )

    def jobs(self) -> Iterator[Job]:
        """Every job, the failure handlers last: each is a function and has a record in a run."""
        for phase in self.all_phases():
            yield from phase.jobs

    def earlier_jobs(self, phase: str) -> tuple[str, ...]:
        """Jobs of the phases that run before ``phase``: all of the workflow's for the handlers."""
        names: list[str] = []
        for candidate in self.phase_order():
            if candidate.name == phase:
                break
            names += [job.name for job in candidate.jobs]
        return tuple(names)

    def job(self, name: str) -> Job:
        for job in self.jobs():
            if job.name == name:
                return job
        raise KeyError(name)

    def to_document(self) -> dict[str, Any]:
        """A JSON- and BSON-safe form: the run snapshot and the file bundled for the starter."""
        return {
            "workflow": self.name,
            "description": self.description,
            "phases": [_phase_document(phase) for phase in self.phases],
            "on_failure": None if self.on_failure is None else _phase_document(self.on_failure),
            **({} if self.on_exit is None else {"on_exit": _phase_document(self.on_exit)}),
            "input_schema": None if self.input_schema is None else dict(self.input_schema),
            "notify": {
                "on": list(self.notify.on),
                "email": list(self.notify.email),
                "slack_webhook_secret": self.notify.slack_webhook_secret,
            },
            "schedule": self.schedule,
            **({} if self.schedule_timezone is None else {"schedule_timezone": self.schedule_timezone}),
            **({} if self.schedule_overlap == "skip" else {"schedule_overlap": self.schedule_overlap}),
            "timeout": self.timeout,
            "retention_days": self.retention_days,
            **({} if self.concurrency is None else {"concurrency": self.concurrency.to_document()}),
            **({} if self.priority is None else {"priority": self.priority}),
            **({} if self.on_limit == "queue" else {"on_limit": self.on_limit}),
            **({} if self.output is None else {"output": self.output}),
        }

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> Workflow:
        """Rebuild the IR from ``to_document`` output (``code`` and ``env`` are build-time only
        and are not part of the snapshot)."""
        notify = document.get("notify") or {}
        handlers = document.get("on_failure")
        return cls(
            name=document["workflow"],
            description=document.get("description", ""),
            phases=tuple(_phase_from_document(phase) for phase in document["phases"]),
            on_failure=None if handlers is None else _phase_from_document(handlers),
            on_exit=None if document.get("on_exit") is None else _phase_from_document(document["on_exit"]),
            input_schema=document.get("input_schema"),
            notify=Notify(
                on=tuple(notify.get("on", Notify().on)),
                email=tuple(notify.get("email", ())),
                slack_webhook_secret=notify.get("slack_webhook_secret"),
            ),
            schedule=document.get("schedule"),
            schedule_timezone=document.get("schedule_timezone"),
            schedule_overlap=document.get("schedule_overlap", "skip"),
            timeout=document.get("timeout"),
            retention_days=document.get("retention_days"),
            concurrency=None
            if document.get("concurrency") is None
            else RunConcurrency(**document["concurrency"]),
            priority=document.get("priority"),
            on_limit=document.get("on_limit", "queue"),
            output=document.get("output"),
        )


def _plain(value: Any) -> Any:
    return value.to_document() if isinstance(value, Tolerance) else value


def _phase_document(phase: Phase) -> dict[str, Any]:
    return {
        "name": phase.name,
        "next": phase.next,
        "jobs": [
            {
                "name": job.name,
                "after": list(job.after),
                "join": job.join,
                **({} if job.depends is None else {"depends": job.depends}),
                "allow_failure": job.allow_failure
                if isinstance(job.allow_failure, bool)
                else list(job.allow_failure),
                **({} if job.results == "after" else {"results": job.results}),
                **({"fails_run": True} if job.fails_run else {}),
                "memory": job.memory,
                "timeout": job.timeout,
                "retries": job.retries,
                "retry": job.retry.to_document(),
                **({} if job.max_duration is None else {"max_duration": job.max_duration}),
                "wait": job.wait,
                **({} if job.wait_until is None else {"wait_until": job.wait_until}),
                "approval": None
                if job.approval is None
                else {"timeout": job.approval.timeout, "message": job.approval.message},
                **({} if job.event is None else {"event": job.event.to_document()}),
                **({} if job.callback is None else {"callback": job.callback.to_document()}),
                "when": job.when,
                "permissions": [permission.to_document() for permission in job.permissions],
                **({} if job.for_each is None else {key: _plain(getattr(job, key)) for key in FAN_OUT_KEYS}),
                **{key: getattr(job, key) for key in INVOKE_KEYS if getattr(job, key) is not None},
                **({} if job.http is None else {"http": job.http.to_document()}),
                **({} if job.call is None else {"call": job.call.to_document()}),
                **({} if job.child_workflow is None else {"workflow": job.child_workflow.to_document()}),
                **({} if job.concurrency is None else {"concurrency": job.concurrency.to_document()}),
                **({} if job.rate_limit is None else {"rate_limit": job.rate_limit.to_document()}),
            }
            for job in phase.jobs
        ],
    }


def _phase_from_document(phase: Mapping[str, Any]) -> Phase:
    return Phase(
        name=phase["name"],
        next=phase.get("next"),
        jobs=tuple(
            Job(
                name=job["name"],
                phase=phase["name"],
                after=tuple(job.get("after", ())),
                join=job.get("join", "all"),
                depends=job.get("depends"),
                allow_failure=job.get("allow_failure", False),
                results=job.get("results", "after"),
                fails_run=job.get("fails_run", False),
                memory=job["memory"],
                timeout=job["timeout"],
                # A snapshot from before retry policies has only ``retries``.
                retry=RetryPolicy.from_document(job["retry"])
                if "retry" in job
                else RetryPolicy(max=job["retries"]),
                max_duration=job.get("max_duration"),
                wait=job.get("wait"),
                wait_until=job.get("wait_until"),
                approval=None if job.get("approval") is None else Approval(**job["approval"]),
                event=None if job.get("event") is None else EventWait(**job["event"]),
                callback=None if job.get("callback") is None else Callback(**job["callback"]),
                when=job.get("when"),
                permissions=tuple(
                    Permission(actions=tuple(item["actions"]), resources=tuple(item["resources"]))
                    for item in job.get("permissions", ())
                ),
                **{key: job[key] for key in FAN_OUT_KEYS if key in job},
                **{key: job[key] for key in INVOKE_KEYS if key in job},
                http=None if job.get("http") is None else HttpRequest.from_document(job["http"]),
                call=None if job.get("call") is None else ServiceCall(**job["call"]),
                child_workflow=None if job.get("workflow") is None else ChildWorkflow(**job["workflow"]),
                **limits_from_document(job),
            )
            for job in phase["jobs"]
        ),
    )
