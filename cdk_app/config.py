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
from constructs.trigger import AtlasTrigger, ExistingEventBus, PartnerEventSource, TriggerWiring
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
"""Context keys that select the ``atlas`` wiring, all three together."""

CONTEXT_KEYS = (
    "workflowsDir",
    "mongodbSecretArn",
    "mongodbSecretName",
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

    @classmethod
    def from_context(cls, node: Node) -> AppConfig:
        keys = node.try_get_context
        return cls.from_mapping({key: keys(key) for key in CONTEXT_KEYS})

    @classmethod
    def from_mapping(cls, context: Mapping[str, object]) -> AppConfig:
        values = {key: str(value) for key, value in context.items() if value not in (None, "")}
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
        wiring, wiring_problems = _wiring(values)
        problems += wiring_problems
        if problems:
            raise ConfigError(problems)
        return cls(
            workflows_dir=Path(values.get("workflowsDir", str(cls.workflows_dir))),
            secret_arn=values.get("mongodbSecretArn"),
            secret_name=values.get("mongodbSecretName"),
            store=store,
            wiring=wiring,
            reconcile_schedule=schedule,
        )


def _wiring(values: Mapping[str, str]) -> tuple[TriggerWiring, list[Problem]]:
    given_ids = [key for key in ATLAS_IDS if key in values]
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
    stray = [key for key in ("atlasProfile", "atlasTriggerName") if key in values]
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
