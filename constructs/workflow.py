"""The ``Workflow`` construct: everything one spec deploys (docs/architecture.md, "Deployed resources")."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import cast

from aws_cdk import Acknowledgment, ArnFormat, Duration, Names, NestedStack, Stack, Validations
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_logs as logs
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_scheduler_targets as scheduler_targets
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs

from constructs import Construct
from constructs.children import may_start_children
from constructs.connection import status_key_secret
from constructs.database_access import DatabaseAccess, FunctionClass, workflow_database_access
from constructs.event_rules import RULE_MAX_EVENT_AGE, RULE_RETRY_ATTEMPTS, workflow_rules
from constructs.job_environment import environment_problems
from constructs.job_permissions import grant_spec_permissions
from constructs.lambda_code import DEFINITION_FILE, CodeStaging
from constructs.lambda_runtime import ARCHITECTURE, PYTHON_RUNTIME
from constructs.monitoring import (
    notification_topic,
    reconciler_alarm,
    rejected_statuses_alarm,
    workflow_alarms,
)
from constructs.networking import PrivateNetwork, in_network
from constructs.observability import spec_alarms, workflow_dashboard
from constructs.start_schedule import start_schedule
from constructs.timers import scheduler_principal, timer_schedule
from constructs.tracing import exports, function_tracing
from constructs.versions import pin_runs_to_versions, publish_versions, retain, version_options
from runtime import contracts
from runtime.definition import model
from runtime.errors import SpecError
from runtime.store.settings import StoreSettings

SHARED_JOB_ROLE = "JobRole"
"""The construct id of the role the jobs without a role of their own share."""

JOB_STACKS = 8
"""Nested stacks the job functions are spread over, by a hash of the job name. Fixed, so adding a
job never moves another. At up to 6 resources per job (function and version, each with its invoke
config; and a role and policy for a job with ``permissions``) the fullest of the 8 holds 468 of
its 500 resources at 500 jobs with permissions (and 78 of its 200 outputs, a version number
each): room for about 530 such jobs, more without permissions."""

JOB_ASYNC_RETRY_ATTEMPTS = model.JOB_ASYNC_RETRIES
"""Lambda's own retries of a job invocation: none, every retry is the orchestrator's."""

JOB_MAX_EVENT_AGE = Duration.hours(6)
"""How long Lambda keeps trying to start a throttled job before the on-failure destination
reports it failed to the orchestrator (the run never waits forever)."""

SYSTEM_FUNCTION_TIMEOUT = Duration.seconds(contracts.SYSTEM_FUNCTION_TIMEOUT_SECONDS)
"""Of the orchestrator, notifier and starter: each handles one event."""

RECONCILER_TIMEOUT = Duration.minutes(5)
"""A pass repairs up to ``runtime.service.reconciler.RUNS_PER_PASS`` runs, a few commands each."""

RECONCILER_ASYNC_RETRIES = 0
"""Lambda's own retries of a reconciler pass: none. A failed pass goes to the dead-letter queue
and the next one comes on schedule and does the same; a retry could overlap it."""

RECONCILER_MAX_EVENT_AGE = Duration.minutes(5)
"""How long Lambda keeps trying to start a throttled pass before the dead-letter queue: a
schedule period at the default rate, so a late pass does not pile onto the next ones."""

LOG_RETENTION = logs.RetentionDays.ONE_MONTH
"""Of the one log group all functions of a workflow write to."""

APPLICATION_LOG_LEVEL = lambda_.ApplicationLogLevel.INFO
"""The handlers log every decision and every dropped event at INFO, which the Python runtime's
default level would hide; logs are JSON so they can be queried."""

HANDLERS = {
    "orchestrator": "runtime.handlers.orchestrator.handler",
    "notifier": "runtime.handlers.notifier.handler",
    "starter": "runtime.handlers.starter.handler",
    "job": "runtime.handlers.job.handler",
    "reconciler": "runtime.handlers.reconciler.handler",
}
"""Lambda entry points (docs/architecture.md)."""


INVOKE_HANDLER = "runtime.handlers.invoke.handler"
"""``JOB_HANDLER`` of an ``invoke`` job: the job wrapper calls the existing function."""
HTTP_HANDLER = "runtime.handlers.http.handler"
"""``JOB_HANDLER`` of an ``http`` job: the job wrapper sends the request."""
CALL_HANDLER = "runtime.handlers.call.handler"
"""``JOB_HANDLER`` of a ``call`` job: the job wrapper makes the service call."""


def function_name(workflow: str, role: str) -> str:
    """Physical names of the workflow's own functions, e.g. ``catch_the_fish-starter``; never
    under the ``<workflow>-job-`` prefix the orchestrator may invoke."""
    return f"{workflow}-{role}"


def job_stack_index(job: str) -> int:
    """The nested stack a job's function lives in: stable for the job's lifetime."""
    return int.from_bytes(hashlib.sha256(job.encode()).digest()[:4], "big") % JOB_STACKS


@dataclass(frozen=True, kw_only=True)
class WorkflowProps:
    workflow: model.Workflow
    """The compiled spec to deploy."""
    event_bus: events.IEventBus
    """The bus status inserts arrive on (``constructs.trigger.StatusEvents``)."""
    event_source_prefix: str = contracts.PARTNER_SOURCE_PREFIX
    """What the ``source`` of the status events begins with (``StatusEvents.source_prefix``); the
    rules accept no other. Default the Atlas partner sources' prefix."""
    database: DatabaseAccess | None = None
    """How the functions sign in to MongoDB (``constructs.database_access``, the shared stack's);
    give this or ``secret``."""
    secret: secretsmanager.ISecret | None = None
    """Password mode with this Secrets Manager secret holding the MongoDB connection string (the
    URI, or JSON with ``uri``); give this or ``database``."""
    layer: lambda_.ILayerVersion
    """The shared dependency layer (``constructs.bundling.DependencyLayer``)."""
    store: StoreSettings = StoreSettings()
    """Database and collection names; default ``StoreSettings()`` (the seed's names)."""
    network: PrivateNetwork | None = None
    """Private subnets for every function (context key ``vpc``); default none."""
    reconcile_schedule: str = "rate(5 minutes)"
    """How often the reconciler repairs runs whose events were lost (an EventBridge schedule
    expression, context key ``reconcileSchedule``); default every 5 minutes."""
    own_roles: Sequence[str] = ()
    """Jobs that get a role of their own though their spec gives them no ``permissions``: the ones
    this app grants to in CDK (``job_role``). Every other job without permissions shares one."""
    status_key: secretsmanager.ISecret | None = None
    """The status signing key (``constructs.connection.status_key_secret``), shared by the
    workflows of an app so one operator key serves them all; default: one of the workflow's own."""
    tracing: model.Tracing = model.Tracing()
    """Where the functions export the runs' spans when the spec has no ``tracing`` (context key
    ``tracing``, ``constructs.tracing``); default nowhere."""
    traced_layer: lambda_.ILayerVersion | None = None
    """The dependency layer with OpenTelemetry's SDK and exporter besides
    (``DependencyLayerProps(also=(TRACING_REQUIREMENTS,))``): every function of a workflow that
    exports its spans gets it instead of ``layer``; needed then, unused otherwise."""
    delivery: str = model.DEFAULT_DELIVERY
    """How job reports reach the orchestrator when the spec has no ``delivery`` (context key
    ``delivery``): ``fast`` or ``economy`` (``model.DELIVERY_MODES``)."""


class Workflow(Construct):
    """Orchestrator, notifier, starter and job functions, the rules routing status events to them,
    their dead-letter queue, the notification topic and the alarms that feed it."""

    def __init__(self, scope: Construct, construct_id: str, props: WorkflowProps) -> None:
        super().__init__(scope, construct_id)
        self._props = props
        workflow = props.workflow
        if props.delivery not in model.DELIVERY_MODES:
            raise ValueError(
                f"WorkflowProps.delivery must be {' or '.join(model.DELIVERY_MODES)}, not {props.delivery!r}"
            )
        unknown = sorted(set(props.own_roles) - {job.name for job in workflow.jobs()})
        if unknown:
            raise ValueError(
                f"WorkflowProps.own_roles names {', '.join(unknown)}, not jobs of workflow "
                f"{workflow.name!r} (its jobs are {', '.join(sorted(job.name for job in workflow.jobs()))})"
            )
        self._database = workflow_database_access(
            self, workflow.name, props.store, props.database, props.secret
        )
        self._staging = CodeStaging(self, workflow)
        self._job_code = self._staging.jobs()
        self._runtime_code: dict[int | None, lambda_.Code] = {}
        self._status_key = props.status_key or status_key_secret(self, "StatusKey")
        self._tracing = workflow.tracing or props.tracing
        if exports(self._tracing) and props.traced_layer is None:
            raise ValueError(
                f"workflow {workflow.name!r} exports its spans (tracing: {self._tracing.exporter}): "
                "WorkflowProps.traced_layer must be the layer with OpenTelemetry's SDK "
                "(DependencyLayerProps(also=(TRACING_REQUIREMENTS,)))"
            )
        self._function_tracing = function_tracing(self, self._tracing, workflow.name)

        self._topic = notification_topic(self, workflow)
        self._log_group = logs.LogGroup(
            self, "Logs", retention=LOG_RETENTION, encryption_key=self._topic.master_key
        )
        self._dead_letter_queue = sqs.Queue(
            self,
            "DeadLetterQueue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        Validations.of(self._dead_letter_queue).acknowledge(
            Acknowledgment(
                id="AwsSolutions-SQS3",
                reason="This queue is itself the dead-letter queue of the workflow's rules and functions.",
            )
        )

        self._orchestrator = self._system_function(
            "orchestrator",
            "Records status events in the run and dispatches the jobs that became ready.",
            {contracts.WORKFLOW_NAME: workflow.name},
        )
        self._may_invoke_own_jobs(self._orchestrator)
        slack = self._slack_webhook_secret(workflow.notify.slack_webhook_secret)
        self._notifier = self._system_function(
            "notifier",
            "Tells people what happened to a run.",
            {contracts.NOTIFY_TOPIC_ARN: self._topic.topic_arn}
            | ({contracts.SLACK_WEBHOOK_SECRET_ARN: slack.secret_arn} if slack else {}),
            extra_secrets=(slack,) if slack else (),
        )
        self._topic.grant_publish(self._notifier)
        Validations.of(self._notifier.role or self._notifier).acknowledge(
            Acknowledgment(
                id="AwsSolutions-IAM5[Action::kms:GenerateDataKey*]",
                reason="Publishing to the encrypted topic needs a data key from the topic's key; the "
                "statement names that one key.",
            )
        )
        self._starter = self._system_function(
            "starter",
            "Starts a run under a caller-chosen run id (idempotent).",
            {contracts.WORKFLOW_DEFINITION_FILE: DEFINITION_FILE},
            code=lambda_.Code.from_asset(str(self._staging.starter())),
        )

        orchestrator = cast(lambda_.CfnFunction, self._orchestrator.node.default_child)
        # cdk-nag names the orchestrator's ARN by its logical id before synthesis prepares the
        # nested stacks, and by the nested stack parameter carrying it afterwards.
        self._on_failure_acknowledgments = tuple(
            Acknowledgment(
                id=f"AwsSolutions-IAM5[Resource::<{reference}>:*]",
                reason="A job's on-failure destination may invoke any version of this workflow's "
                "orchestrator (CDK's grant for LambdaDestination); no other function.",
            )
            for reference in (
                f"{Stack.of(self).get_logical_id(orchestrator)}.Arn",
                f"referenceto{Names.unique_id(orchestrator)}Arn",
            )
        )
        # Wait and approval jobs run no code: the engine completes them, so they get no function.
        coded = [job for job in workflow.jobs() if job.runs_code]
        too_large = environment_problems(workflow, {job.name: self._job_environment(job) for job in coded})
        if too_large:
            raise SpecError(too_large)
        self._job_roles = MappingProxyType({job.name: self._job_role(job) for job in coded})
        self._job_functions = MappingProxyType({job.name: self._job_function(job) for job in coded})
        # Removing a job from the spec must not delete what a run in flight still invokes.
        retain(*self._job_functions.values(), *self._job_roles.values())
        self._job_versions = MappingProxyType(
            dict(zip(self._job_functions, publish_versions(list(self._job_functions.values())), strict=True))
        )
        pin_runs_to_versions(
            self._starter,
            list(self._job_versions.values()),
            [child for child in self.node.children if isinstance(child, NestedStack)],
        )

        self._timer_schedule: scheduler.Schedule | None = None
        self._reconciler, self._reconcile_schedule = self._reconciler_on_schedule()
        self._rules = MappingProxyType(
            workflow_rules(
                self,
                workflow,
                store=props.store,
                event_bus=props.event_bus,
                source_prefix=props.event_source_prefix,
                orchestrator=self._orchestrator,
                notifier=self._notifier,
                dead_letter_queue=self._dead_letter_queue,
            )
        )
        self._start_schedule = (
            None
            if workflow.schedule is None
            else start_schedule(
                self,
                workflow,
                self._starter,
                self._dead_letter_queue,
                RULE_RETRY_ATTEMPTS,
                RULE_MAX_EVENT_AGE,
            )
        )
        self._alarms = workflow_alarms(
            self, workflow.name, self._topic, self._dead_letter_queue, self._orchestrator, self._starter
        ) + (
            reconciler_alarm(self, workflow.name, self._topic),
            rejected_statuses_alarm(self, workflow.name, self._topic),
            *spec_alarms(self, workflow, self._topic),
        )
        self._dashboard = workflow_dashboard(self, workflow, self._alarms)

    @property
    def delivery(self) -> str:
        """How job reports reach the orchestrator: the spec's ``delivery``, else the app's."""
        return self._props.workflow.delivery or self._props.delivery

    @property
    def orchestrator(self) -> lambda_.Function:
        return self._orchestrator

    @property
    def reconciler(self) -> lambda_.Function:
        return self._reconciler

    @property
    def reconcile_schedule(self) -> scheduler.Schedule:
        """The EventBridge Scheduler schedule that runs the reconciler."""
        return self._reconcile_schedule

    @property
    def timer_schedule(self) -> scheduler.Schedule | None:
        """The every-minute schedule that fires due timers (``constructs.timers``); None for a
        workflow whose runs never wait for a time."""
        return self._timer_schedule

    @property
    def notifier(self) -> lambda_.Function:
        return self._notifier

    @property
    def starter(self) -> lambda_.Function:
        return self._starter

    @property
    def job_functions(self) -> Mapping[str, lambda_.Function]:
        """Job name -> its function."""
        return self._job_functions

    @property
    def job_versions(self) -> Mapping[str, lambda_.Version]:
        """Job name -> the version of its function this deploy publishes (runs started after the
        deploy invoke it; those started before keep theirs)."""
        return self._job_versions

    @property
    def job_roles(self) -> Mapping[str, iam.Role]:
        """Job name -> its function's role (one shared by the jobs without ``permissions``)."""
        return self._job_roles

    def job_function(self, name: str) -> lambda_.Function:
        """The function of job ``name``."""
        return self._job_functions[self._known_job(name)]

    def job_role(self, name: str) -> iam.Role:
        """The role of job ``name``, for grants to that job alone:
        ``bucket.grant_read(workflow.job_role("extract"))``. Only a job with a role of its own has
        one (``permissions`` in its spec, or named in ``WorkflowProps.own_roles``); for any other
        this raises, so a grant meant for one job never reaches every job that shares a role."""
        job = self._known_job(name)
        role = self._job_roles[job]
        if role is self.node.try_find_child(SHARED_JOB_ROLE):
            raise ValueError(
                f"job {name!r} of workflow {self._props.workflow.name!r} has no role of its own: it has "
                "no permissions in its spec, so it shares one role with every such job. Name it in "
                "WorkflowProps(own_roles=[...]) (or give it permissions) for a role to grant to, or grant "
                "to shared_job_role to reach them all"
            )
        return role

    @property
    def shared_job_role(self) -> iam.Role | None:
        """The role the jobs without a role of their own share (None when every job has one)."""
        shared = self.node.try_find_child(SHARED_JOB_ROLE)
        return shared if isinstance(shared, iam.Role) else None

    def _known_job(self, name: str) -> str:
        if name not in self._job_functions:
            raise KeyError(
                f"workflow {self._props.workflow.name!r} has no job {name!r}; "
                f"its jobs are {', '.join(sorted(self._job_functions))}"
            )
        return name

    @property
    def rules(self) -> Mapping[str, events.Rule]:
        """``orchestrator`` and ``notifier`` (when ``notify.on`` names any status)."""
        return self._rules

    @property
    def start_schedule(self) -> scheduler.Schedule | None:
        """The EventBridge Scheduler schedule that starts runs (``constructs.start_schedule``);
        None without the spec's ``schedule``."""
        return self._start_schedule

    @property
    def dead_letter_queue(self) -> sqs.IQueue:
        """Events the rules could not deliver and invocations the workflow's functions gave up on."""
        return self._dead_letter_queue

    @property
    def topic(self) -> sns.ITopic:
        """Notifications and alarms; ``notify.email`` addresses are subscribed."""
        return self._topic

    @property
    def alarms(self) -> tuple[cloudwatch.Alarm, ...]:
        return self._alarms

    @property
    def dashboard(self) -> cloudwatch.Dashboard:
        """The workflow's CloudWatch dashboard (``constructs.observability``)."""
        return self._dashboard

    @property
    def tracing(self) -> model.Tracing:
        """Where the functions export the runs' spans: the spec's ``tracing``, else the props'."""
        return self._tracing

    @property
    def log_group(self) -> logs.ILogGroup:
        """Shared by every function of the workflow (one retention setting, no per-job resource)."""
        return self._log_group

    def _store_environment(self, function_class: FunctionClass) -> dict[str, str]:
        return self._database.environment(function_class)

    def _slack_webhook_secret(self, name_or_arn: str | None) -> secretsmanager.ISecret | None:
        if name_or_arn is None:
            return None
        if name_or_arn.startswith("arn:"):
            return secretsmanager.Secret.from_secret_complete_arn(self, "SlackWebhook", name_or_arn)
        return secretsmanager.Secret.from_secret_name_v2(self, "SlackWebhook", name_or_arn)

    def _code(self, stack_index: int | None) -> lambda_.Code:
        """One runtime-only ``Code`` per stack: CDK binds a ``Code`` to a single stack."""
        if stack_index not in self._runtime_code:
            self._runtime_code[stack_index] = lambda_.Code.from_asset(str(self._staging.runtime_only()))
        return self._runtime_code[stack_index]

    def _layers(self) -> list[lambda_.ILayerVersion]:
        """The dependency layer (the traced one when the spans are exported) and the collector's."""
        dependencies = self._props.traced_layer if exports(self._tracing) else None
        return [dependencies or self._props.layer, *self._function_tracing.layers]

    def _system_function(
        self,
        role_name: str,
        description: str,
        environment: Mapping[str, str] | None = None,
        code: lambda_.Code | None = None,
        extra_secrets: Sequence[secretsmanager.ISecret] = (),
        timeout: Duration = SYSTEM_FUNCTION_TIMEOUT,
        retries: tuple[int, Duration] | None = None,
    ) -> lambda_.Function:
        """Orchestrator, notifier, starter, reconciler: own role, failures parked in the
        dead-letter queue. ``retries``: Lambda's own retries of an asynchronous invocation and
        the event's maximum age; default Lambda's (2 retries, 6 hours)."""
        workflow = self._props.workflow.name
        construct_id = role_name.capitalize()
        role = iam.Role(
            self,
            f"{construct_id}Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"The {role_name} of workflow {workflow}",
        )
        function = lambda_.Function(
            self,
            construct_id,
            function_name=function_name(workflow, role_name),
            description=f"{workflow}: {description}",
            code=code or self._code(None),
            handler=HANDLERS[role_name],
            runtime=PYTHON_RUNTIME,
            architecture=ARCHITECTURE,
            layers=self._layers(),
            memory_size=contracts.SYSTEM_FUNCTION_MEMORY_MB,
            timeout=timeout,
            role=role,
            log_group=self._log_group,
            logging_format=lambda_.LoggingFormat.JSON,
            application_log_level_v2=APPLICATION_LOG_LEVEL,
            environment=self._store_environment(cast(FunctionClass, role_name))
            | {contracts.STATUS_KEY_SECRET_ARN: self._status_key.secret_arn}
            | self._function_tracing.environment
            | dict(environment or {}),
            tracing=self._function_tracing.tracing,
            on_failure=destinations.SqsDestination(self._dead_letter_queue),
            retry_attempts=retries[0] if retries else None,
            max_event_age=retries[1] if retries else None,
            **in_network(self._props.network, role),
        )
        self._database.grant(role, cast(FunctionClass, role_name))
        self._function_tracing.acknowledge(role)
        for secret in (self._status_key, *extra_secrets):
            secret.grant_read(role)
        self._log_group.grant_write(role)
        return function

    def _logical_id(self, function: lambda_.Function) -> str:
        return Stack.of(self).get_logical_id(cast(lambda_.CfnFunction, function.node.default_child))

    def _may_invoke_own_jobs(self, function: lambda_.Function) -> None:
        """The orchestrator and the reconciler dispatch job attempts: they may invoke this
        workflow's job functions, and the starters of the child workflows it runs, and nothing
        else."""
        may_start_children(function, self._props.workflow)
        function.add_to_role_policy(
            iam.PolicyStatement(
                sid="InvokeOwnJobs",
                actions=["lambda:InvokeFunction"],
                resources=[self._job_function_arn_pattern()],
            )
        )
        Validations.of(function.role or function).acknowledge(
            Acknowledgment(
                id="AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:lambda:<AWS::Region>:<AWS::AccountId>:"
                f"function:{model.job_function_prefix(self._props.workflow.name)}*]",
                reason="The wildcard is the name prefix of this workflow's job functions: one statement "
                "that does not grow with the number of jobs and matches no other function.",
            )
        )

    def _reconciler_on_schedule(self) -> tuple[lambda_.Function, scheduler.Schedule]:
        """The reconciler and the EventBridge Scheduler schedule that runs it; the schedule's role
        may invoke that one function."""
        workflow = self._props.workflow.name
        reconciler = self._system_function(
            "reconciler",
            "Repairs runs whose events were lost, from their statuses.",
            {contracts.WORKFLOW_NAME: workflow},
            timeout=RECONCILER_TIMEOUT,
            retries=(RECONCILER_ASYNC_RETRIES, RECONCILER_MAX_EVENT_AGE),
        )
        self._may_invoke_own_jobs(reconciler)
        schedule_role = iam.Role(
            self,
            "ReconcileScheduleRole",
            assumed_by=scheduler_principal(self),
            description=f"Lets the reconcile schedule of workflow {workflow} invoke its reconciler",
        )
        Validations.of(schedule_role).acknowledge(
            Acknowledgment(
                id=f"AwsSolutions-IAM5[Resource::<{self._logical_id(reconciler)}.Arn>:*]",
                reason="CDK's invoke grant for the schedule covers the reconciler's versions; it names "
                "that one function.",
            )
        )
        schedule = scheduler.Schedule(
            self,
            "ReconcileSchedule",
            description=f"Repairs runs of {workflow} whose events were lost",
            schedule=scheduler.ScheduleExpression.expression(self._props.reconcile_schedule),
            # A pass that fails is not retried: the next one comes on schedule and does the same.
            target=scheduler_targets.LambdaInvoke(
                reconciler,
                role=schedule_role,
                dead_letter_queue=self._dead_letter_queue,
                retry_attempts=0,
                max_event_age=Duration.minutes(5),
            ),
        )
        if self._props.workflow.uses_timers:
            self._timer_schedule = timer_schedule(
                self, workflow, reconciler, schedule_role, self._dead_letter_queue
            )
        return reconciler, schedule

    def _job_role(self, job: model.Job) -> iam.Role:
        """A job with ``permissions`` has its own role, in its nested stack: its statements, the
        secret, the log group and the CDK user's grants reach it alone. Jobs without share one
        role, so roles grow with the jobs that declare permissions (the quota is 1,000 roles)."""
        workflow = self._props.workflow
        own = (
            bool(job.permissions)
            or job.invoke is not None
            or job.call is not None
            or (job.http is not None and job.http.secret is not None)
            or job.name in self._props.own_roles
        )
        if not own and isinstance(shared := self.node.try_find_child(SHARED_JOB_ROLE), iam.Role):
            return shared
        role = iam.Role(
            self._job_stack(job_stack_index(job.name)) if own else self,
            f"JobRole-{job.name}" if own else SHARED_JOB_ROLE,
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"Job {job.name} of workflow {workflow.name}"
            if own
            else f"The jobs without permissions of workflow {workflow.name}",
        )
        self._database.grant(role, "job")
        self._log_group.grant_write(role)
        grant_spec_permissions(role, job)
        Validations.of(role).acknowledge(*self._on_failure_acknowledgments)
        self._function_tracing.acknowledge(role)
        return role

    def _job_function(self, job: model.Job) -> lambda_.Function:
        workflow = self._props.workflow
        index = job_stack_index(job.name)
        stack = self._job_stack(index)
        code: lambda_.Code
        if job.name in self._job_code:
            code = lambda_.Code.from_asset(self._job_code[job.name][0])
        else:
            code = self._code(index)
        return lambda_.Function(
            stack,
            f"Job-{job.name}",
            function_name=model.job_function_name(workflow.name, job.name),
            description=f"{workflow.name}: job {job.name} of phase {job.phase}",
            code=code,
            handler=HANDLERS["job"],
            runtime=PYTHON_RUNTIME,
            architecture=ARCHITECTURE,
            layers=self._layers(),
            memory_size=job.memory,
            timeout=Duration.seconds(job.timeout),
            role=self._job_roles[job.name],
            log_group=self._log_group,
            logging_format=lambda_.LoggingFormat.JSON,
            application_log_level_v2=APPLICATION_LOG_LEVEL,
            environment=self._job_environment(job),
            tracing=self._function_tracing.tracing,
            retry_attempts=JOB_ASYNC_RETRY_ATTEMPTS,
            max_event_age=JOB_MAX_EVENT_AGE,
            on_failure=destinations.LambdaDestination(self._orchestrator),
            current_version_options=version_options(
                self._orchestrator, JOB_ASYNC_RETRY_ATTEMPTS, JOB_MAX_EVENT_AGE
            ),
            **in_network(self._props.network, self._job_roles[job.name]),
        )

    def _job_environment(self, job: model.Job) -> dict[str, str]:
        """The exporter's variables (which the spec's ``env`` may override), the spec's ``env``, the
        store's settings and, for a job with code, ``JOB_HANDLER``; for an ``invoke`` job, the
        handler that calls the function, and which one with what."""
        environment = self._function_tracing.environment | dict(job.env) | self._store_environment("job")
        if job.name in self._job_code:
            environment[contracts.JOB_HANDLER] = self._job_code[job.name][1]
        if job.call is not None:
            environment[contracts.JOB_HANDLER] = CALL_HANDLER
            environment[contracts.CALL_REQUEST] = json.dumps(job.call.to_document(), separators=(",", ":"))
        if job.http is not None:
            environment[contracts.JOB_HANDLER] = HTTP_HANDLER
            environment[contracts.HTTP_REQUEST] = json.dumps(job.http.to_document(), separators=(",", ":"))
        if self.delivery == "fast":
            # A literal name, not a reference: the orchestrator's policy names the job functions.
            environment[contracts.ORCHESTRATOR_FUNCTION] = function_name(
                self._props.workflow.name, "orchestrator"
            )
        if job.invoke is not None:
            environment[contracts.JOB_HANDLER] = INVOKE_HANDLER
            environment[contracts.INVOKE_FUNCTION] = job.invoke
            if job.payload is not None:
                environment[contracts.INVOKE_PAYLOAD] = job.payload
        return environment

    def _job_stack(self, index: int) -> NestedStack:
        construct_id = f"Jobs{index}"
        existing = self.node.try_find_child(construct_id)
        if isinstance(existing, NestedStack):
            return existing
        return NestedStack(
            self,
            construct_id,
            description=f"Job functions of workflow {self._props.workflow.name} (bucket {index})",
        )

    def _job_function_arn_pattern(self) -> str:
        return Stack.of(self).format_arn(
            service="lambda",
            resource="function",
            resource_name=model.job_function_prefix(self._props.workflow.name) + "*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
