"""App configuration from CDK context (cdk.json or ``cdk synth -c key=value``).

Every key has an environment-agnostic default, so ``cdk synth`` works without an AWS account.
The keys are listed in ``CONTEXT_KEYS`` and documented in docs/deploy.md ("Context keys").
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from constructs import Node
from constructs.database_access import DatabaseAuth, IamAuth, PasswordAuth
from constructs.networking import CREATE_VPC, VpcPlacement
from constructs.trigger import AtlasTrigger, ExistingEventBus, PartnerEventSource, TriggerWiring
from runtime.definition.model import DEFAULT_DELIVERY, DELIVERY_MODES, TRACE_EXPORTERS, Tracing
from runtime.errors import Problem, ProblemsError
from runtime.store.settings import StoreSettings

COMPLETE_SECRET_ARN = re.compile(r"arn:[\w-]+:secretsmanager:[\w-]+:\d{12}:secret:[\w/+=.@-]+-[A-Za-z0-9]{6}")
"""CDK imports a secret by ARN only when the ARN carries Secrets Manager's random suffix."""

MONGODB_NAME = re.compile(r"[A-Za-z0-9_-]{1,63}")
"""Database and collection names this app accepts: safe in MongoDB and in Atlas trigger config."""

SCHEDULE_EXPRESSION = re.compile(
    r"cron\(\S+( \S+){5}\)|rate\((1 (minute|hour|day)|[1-9][0-9]* (minutes|hours|days))\)"
)
"""An EventBridge schedule expression, as the spec's ``schedule`` takes it."""

DEFAULT_RECONCILE_SCHEDULE = "rate(5 minutes)"

ATLAS_IDS = {"atlasProjectId": "project_id", "atlasAppId": "app_id", "atlasServiceId": "service_id"}
"""Context keys of the ``atlas`` wiring, all three together. ``atlasProjectId`` alone serves IAM
mode and the private endpoint; ``atlasAppId`` or ``atlasServiceId`` select the wiring."""

MONGODB_AUTH_MODES = ("iam", "password")
"""``mongodbAuth``: database users for the functions' IAM roles, or the connection-string secret."""

KMS_KEY_ARN = re.compile(r"arn:[\w-]+:kms:[\w-]+:\d{12}:key/[\w-]+")
"""A KMS key by ARN (an alias ARN names no key a policy can grant)."""

VPC_ID = re.compile(r"vpc-[0-9a-f]{8,17}")
SUBNET_ID = re.compile(r"subnet-[0-9a-f]{8,17}")

ENDPOINT_URL = re.compile(r"https?://[^\s/]+(/\S*)?")
"""``tracingEndpoint``: an http(s) URL, as the spec's ``tracing.endpoint`` takes it."""

CONTEXT_KEYS = (
    "workflowsDir",
    "mongodbAuth",
    "mongodbUri",
    "mongodbSecretArn",
    "mongodbSecretName",
    "mongodbSecretKmsKeyArn",
    "mongodbDatabase",
    "runsCollection",
    "statusesCollection",
    *ATLAS_IDS,
    "atlasProfile",
    "atlasTriggerName",
    "partnerEventSource",
    "partnerEventBusExists",
    "eventBus",
    "eventSourcePrefix",
    "reconcileSchedule",
    "vpc",
    "vpcSubnetIds",
    "tracing",
    "tracingEndpoint",
    "delivery",
)

DEFAULT_WIRING = ExistingEventBus(name_or_arn="default")
"""With no trigger wiring in context the rules listen on the account's default bus for events
whose ``source`` is an Atlas partner source (forwarded there by a rule of yours): synth and
deploy work. Events sent by hand with ``aws events put-events`` need ``eventSourcePrefix``."""


CONTEXT_SOURCE = "context"
"""Where config problems are: CDK context comes from cdk.json and from ``cdk synth -c``."""


class ConfigError(ProblemsError):
    """The CDK context is contradictory or incomplete; ``problems`` says which keys and why."""


def _problem(message: str) -> Problem:
    return Problem(CONTEXT_SOURCE, None, message)


@dataclass(frozen=True, kw_only=True)
class AppConfig:
    workflows_dir: Path = Path("workflows")
    """Folder of spec files (``workflowsDir``), relative to the working directory."""
    secret_arn: str | None = None
    """Existing MongoDB secret by ARN (``mongodbSecretArn``); default: the app creates one."""
    secret_name: str | None = None
    """Existing MongoDB secret by name (``mongodbSecretName``); default: the app creates one."""
    store: StoreSettings = StoreSettings()
    """``mongodbDatabase``, ``runsCollection``, ``statusesCollection``; default the seed's names."""
    wiring: TriggerWiring = DEFAULT_WIRING
    """From the Atlas ids, ``partnerEventSource`` or ``eventBus``; default the ``default`` bus."""
    reconcile_schedule: str = DEFAULT_RECONCILE_SCHEDULE
    """How often each workflow's reconciler runs (``reconcileSchedule``); default every 5 minutes."""
    database: DatabaseAuth = PasswordAuth()
    """How the functions sign in to MongoDB (``mongodbAuth`` and the keys it reads, see
    ``_database``); default the password secret the app creates, since IAM mode needs the Atlas
    project id and the cluster's address, which a synth without them cannot know."""
    vpc: VpcPlacement | None = None
    """Private networking (``vpc``, ``vpcSubnetIds``); default none: functions outside any VPC."""
    tracing: Tracing = Tracing()
    """Where the functions of a workflow whose spec has no ``tracing`` export their spans
    (``tracing``, ``tracingEndpoint``); default none."""
    delivery: str = DEFAULT_DELIVERY
    """How job reports reach the orchestrator in workflows whose spec has no ``delivery``
    (``delivery``: fast or economy); default ``DEFAULT_DELIVERY``."""

    @classmethod
    def from_context(cls, node: Node) -> AppConfig:
        keys = node.try_get_context
        return cls.from_mapping({key: keys(key) for key in CONTEXT_KEYS})

    @classmethod
    def from_mapping(cls, context: Mapping[str, object]) -> AppConfig:
        values = {
            key: ",".join(map(str, value)) if isinstance(value, list | tuple) else str(value)
            for key, value in context.items()
            if value not in (None, "")
        }  # a list (vpcSubnetIds in cdk.json) reads like its comma-separated form
        problems: list[Problem] = []
        if "mongodbSecretArn" in values and "mongodbSecretName" in values:
            problems.append(_problem("give mongodbSecretArn or mongodbSecretName, not both"))
        secret_arn = values.get("mongodbSecretArn")
        if secret_arn is not None and not COMPLETE_SECRET_ARN.fullmatch(secret_arn):
            problems.append(
                _problem(
                    f"mongodbSecretArn {secret_arn!r} is not a complete Secrets Manager ARN "
                    "(arn:<partition>:secretsmanager:<region>:<account>:secret:<name>-<6 characters>); "
                    "give the full ARN, or the name as mongodbSecretName"
                )
            )
        for key in ("mongodbDatabase", "runsCollection", "statusesCollection"):
            if key in values and not MONGODB_NAME.fullmatch(values[key]):
                problems.append(
                    _problem(
                        f"{key} {values[key]!r} is not a usable MongoDB name "
                        "(letters, digits, '_' and '-', not starting with '$' or containing '.')"
                    )
                )
        store_defaults = StoreSettings()
        store = StoreSettings(
            database=values.get("mongodbDatabase", store_defaults.database),
            runs_collection=values.get("runsCollection", store_defaults.runs_collection),
            statuses_collection=values.get("statusesCollection", store_defaults.statuses_collection),
        )
        schedule = values.get("reconcileSchedule", DEFAULT_RECONCILE_SCHEDULE)
        if not SCHEDULE_EXPRESSION.fullmatch(schedule):
            problems.append(
                _problem(
                    f"reconcileSchedule {schedule!r} is not a schedule expression: use rate(<n> <unit>) "
                    "or cron(<6 fields>), e.g. rate(5 minutes)"
                )
            )
        delivery = values.get("delivery", DEFAULT_DELIVERY)
        if delivery not in DELIVERY_MODES:
            problems.append(_problem(f"delivery must be {' or '.join(DELIVERY_MODES)}, not {delivery!r}"))
        database, database_problems = _database(values)
        vpc, vpc_problems = _vpc(values)
        wiring, wiring_problems = _wiring(
            values, project_id_used=isinstance(database, IamAuth) or vpc is not None
        )
        tracing, tracing_problems = _tracing(values)
        problems += database_problems + vpc_problems + wiring_problems + tracing_problems
        if problems:
            raise ConfigError(problems)
        return cls(
            workflows_dir=Path(values.get("workflowsDir", str(cls.workflows_dir))),
            secret_arn=values.get("mongodbSecretArn"),
            secret_name=values.get("mongodbSecretName"),
            store=store,
            wiring=wiring,
            reconcile_schedule=schedule,
            database=database,
            vpc=vpc,
            tracing=tracing,
            delivery=delivery,
        )


def _database(values: Mapping[str, str]) -> tuple[DatabaseAuth, list[Problem]]:
    """``mongodbAuth`` when given; otherwise password mode when a secret is named, IAM mode when
    ``mongodbUri`` is given, and else password mode with a secret the app creates (a synth with
    no context knows no cluster to sign in to)."""
    secret_keys = [key for key in ("mongodbSecretArn", "mongodbSecretName") if key in values]
    mode = values.get("mongodbAuth", "password" if secret_keys or "mongodbUri" not in values else "iam")
    if mode not in MONGODB_AUTH_MODES:
        return PasswordAuth(), [_problem(f"mongodbAuth must be iam or password, not {mode!r}")]
    kms_key = values.get("mongodbSecretKmsKeyArn")
    if mode == "password":
        problems = []
        if "mongodbUri" in values:
            problems.append(
                _problem(
                    "mongodbUri only applies with mongodbAuth=iam; in password mode the secret holds the URI"
                )
            )
        if kms_key is not None and not secret_keys:
            problems.append(
                _problem(
                    "mongodbSecretKmsKeyArn only applies with mongodbSecretArn or mongodbSecretName: "
                    "the secret the app creates is encrypted with Secrets Manager's own key"
                )
            )
        elif kms_key is not None and not KMS_KEY_ARN.fullmatch(kms_key):
            problems.append(
                _problem(
                    f"mongodbSecretKmsKeyArn {kms_key!r} is not a KMS key ARN "
                    "(arn:<partition>:kms:<region>:<account>:key/<key id>)"
                )
            )
        password = PasswordAuth(
            secret_arn=values.get("mongodbSecretArn"),
            secret_name=values.get("mongodbSecretName"),
            kms_key_arn=kms_key,
        )
        return password, problems
    problems = [
        _problem(f"{key} is the password secret's; mongodbAuth=iam reads no secret")
        for key in (*secret_keys, "mongodbSecretKmsKeyArn")
        if key in values
    ]
    uri = values.get("mongodbUri", "")
    if not uri:
        problems.append(
            _problem("mongodbAuth=iam needs mongodbUri, the cluster's address (mongodb+srv://<cluster host>)")
        )
    elif not uri.startswith(("mongodb://", "mongodb+srv://")) or "@" in uri.split("/")[2]:
        problems.append(
            _problem(
                "mongodbUri must be the cluster's mongodb+srv:// (or mongodb://) address without a user or "
                "password: in IAM mode each function signs in with its AWS role"
            )
        )
    if "atlasProjectId" not in values:
        problems.append(
            _problem(
                "mongodbAuth=iam needs atlasProjectId: the database users and roles are made in that project"
            )
        )
    auth = IamAuth(
        project_id=values.get("atlasProjectId", ""),
        cluster_uri=uri,
        profile=values.get("atlasProfile", IamAuth.profile),
    )
    return auth, problems


def _tracing(values: Mapping[str, str]) -> tuple[Tracing, list[Problem]]:
    """``tracing``: the exporter of the workflows whose spec says none, and ``tracingEndpoint``,
    the endpoint ``otlp`` needs (the spec's ``tracing: {exporter, endpoint}``, as two keys so
    ``cdk synth -c`` can set them)."""
    exporter = values.get("tracing", "none")
    endpoint = values.get("tracingEndpoint")
    if exporter not in TRACE_EXPORTERS:
        return Tracing(), [_problem(f"tracing must be {', '.join(TRACE_EXPORTERS)}, not {exporter!r}")]
    if exporter == "otlp" and endpoint is None:
        return Tracing(), [
            _problem(
                "tracing=otlp needs tracingEndpoint: the base URL of the OTLP/HTTP receiver the spans go "
                "to (e.g. https://collector.example.com:4318)"
            )
        ]
    if exporter != "otlp" and endpoint is not None:
        return Tracing(), [_problem(f"tracingEndpoint only applies with tracing=otlp, not {exporter}")]
    if endpoint is not None and not ENDPOINT_URL.fullmatch(endpoint):
        return Tracing(), [
            _problem(f"tracingEndpoint {endpoint!r} is not an http:// or https:// URL (no spaces)")
        ]
    return Tracing(exporter=exporter, endpoint=endpoint), []


def _vpc(values: Mapping[str, str]) -> tuple[VpcPlacement | None, list[Problem]]:
    """``vpc``: ``create``, or an existing VPC's id with its private subnets in ``vpcSubnetIds``
    (given, not looked up, so synth needs no AWS account)."""
    vpc = values.get("vpc")
    subnets = [subnet.strip() for subnet in values.get("vpcSubnetIds", "").split(",") if subnet.strip()]
    if vpc is None:
        if subnets:
            return None, [_problem("vpcSubnetIds only applies with vpc")]
        return None, []
    problems = []
    if "atlasProjectId" not in values:
        problems.append(
            _problem("vpc needs atlasProjectId: the Atlas private endpoint is made in that project")
        )
    if vpc == CREATE_VPC:
        if subnets:
            problems.append(
                _problem("vpcSubnetIds only applies with an existing vpc (vpc-...), not vpc=create")
            )
        return VpcPlacement(
            project_id=values.get("atlasProjectId", ""), profile=values.get("atlasProfile", "default")
        ), problems
    if not VPC_ID.fullmatch(vpc):
        problems.append(_problem(f"vpc must be create or a VPC id (vpc-...), not {vpc!r}"))
    bad = [subnet for subnet in subnets if not SUBNET_ID.fullmatch(subnet)]
    if not subnets:
        problems.append(
            _problem(f"vpc={vpc} needs vpcSubnetIds: its private subnets, comma-separated (subnet-...)")
        )
    elif bad:
        problems.append(
            _problem(f"vpcSubnetIds has {', '.join(map(repr, bad))}, not a subnet id (subnet-...)")
        )
    placement = VpcPlacement(
        project_id=values.get("atlasProjectId", ""),
        profile=values.get("atlasProfile", "default"),
        vpc_id=vpc,
        subnet_ids=tuple(subnets),
    )
    return placement, problems


def _wiring(
    values: Mapping[str, str], *, project_id_used: bool = False
) -> tuple[TriggerWiring, list[Problem]]:
    given_ids = [key for key in ATLAS_IDS if key in values]
    if project_id_used and given_ids == ["atlasProjectId"]:
        given_ids = []  # the project id alone serves IAM mode or the private endpoint
    modes = [
        name
        for name, selected in (
            ("Atlas ids", bool(given_ids)),
            ("partnerEventSource", "partnerEventSource" in values),
            ("eventBus", "eventBus" in values),
        )
        if selected
    ]
    if len(modes) > 1:
        return DEFAULT_WIRING, [_problem(f"{' and '.join(modes)} select different trigger wirings; keep one")]
    if "eventSourcePrefix" in values and modes and modes != ["eventBus"]:
        return DEFAULT_WIRING, [
            _problem(
                f"eventSourcePrefix only applies with eventBus, not with {modes[0]}: a partner bus "
                "carries its own source"
            )
        ]
    if given_ids:
        missing = [key for key in ATLAS_IDS if key not in values]
        if missing:
            return DEFAULT_WIRING, [_problem(f"the atlas wiring also needs {', '.join(missing)}")]
        atlas = {field: values[key] for key, field in ATLAS_IDS.items()}
        defaults = AtlasTrigger(**atlas)
        return AtlasTrigger(
            **atlas,
            profile=values.get("atlasProfile", defaults.profile),
            name=values.get("atlasTriggerName", defaults.name),
        ), []
    stray = [
        key
        for key in ("atlasProfile", "atlasTriggerName")
        if key in values and not (key == "atlasProfile" and project_id_used)
    ]
    if stray:
        return DEFAULT_WIRING, [_problem(f"{', '.join(stray)} only apply with {', '.join(ATLAS_IDS)}")]
    bus_exists = values.get("partnerEventBusExists", "false")
    if bus_exists.lower() not in ("true", "false"):
        return DEFAULT_WIRING, [_problem(f"partnerEventBusExists must be true or false, not {bus_exists!r}")]
    if "partnerEventBusExists" in values and "partnerEventSource" not in values:
        return DEFAULT_WIRING, [_problem("partnerEventBusExists only applies with partnerEventSource")]
    if "partnerEventSource" in values:
        return PartnerEventSource(
            name=values["partnerEventSource"], bus_exists=bus_exists.lower() == "true"
        ), []
    if "eventBus" in values or "eventSourcePrefix" in values:
        return ExistingEventBus(
            name_or_arn=values.get("eventBus", DEFAULT_WIRING.name_or_arn),
            source_prefix=values.get("eventSourcePrefix", DEFAULT_WIRING.source_prefix),
        ), []
    return DEFAULT_WIRING, []
