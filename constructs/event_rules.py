"""A workflow's EventBridge rules: ``runtime.patterns`` (EventBridge JSON) as CDK's
``EventPattern``, each rule accepting only the trigger's events, delivered with retries and a
dead-letter queue."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs

from constructs import Construct
from runtime import patterns
from runtime.definition.model import Workflow
from runtime.store.settings import StoreSettings

RULE_RETRY_ATTEMPTS = 8
"""EventBridge delivery retries to a rule's target (and Scheduler's to the starter, on the
workflow's schedule) before the event goes to the dead-letter queue."""

RULE_MAX_EVENT_AGE = Duration.hours(2)
"""How long EventBridge (and Scheduler, for the workflow's schedule) keeps retrying a target
before the dead-letter queue."""


_EVENT_PATTERN_FIELDS = {
    "account": "account",
    "detail": "detail",
    "detail-type": "detail_type",
    "id": "id",
    "region": "region",
    "resources": "resources",
    "source": "source",
    "time": "time",
    "version": "version",
}


def event_pattern(pattern: Mapping[str, Any]) -> events.EventPattern:
    """``runtime.patterns`` speaks EventBridge JSON; ``EventPattern`` wants keyword arguments."""
    unknown = set(pattern) - set(_EVENT_PATTERN_FIELDS)
    if unknown:
        raise ValueError(f"event pattern fields {sorted(unknown)} have no EventPattern equivalent")
    return events.EventPattern(
        **{_EVENT_PATTERN_FIELDS[key]: _top_level_values(value) for key, value in pattern.items()}
    )


def _top_level_values(value: Any) -> Any:
    """A top-level field takes a list of strings: ``[{"prefix": p}]`` becomes ``Match.prefix(p)``,
    which synthesizes to that same JSON."""
    if (
        isinstance(value, list)
        and len(value) == 1
        and isinstance(value[0], dict)
        and set(value[0]) == {"prefix"}
    ):
        return events.Match.prefix(value[0]["prefix"])
    return value


def workflow_rules(
    scope: Construct,
    workflow: Workflow,
    *,
    store: StoreSettings,
    event_bus: events.IEventBus,
    source_prefix: str,
    orchestrator: lambda_.IFunction,
    notifier: lambda_.IFunction,
    dead_letter_queue: sqs.IQueue,
) -> dict[str, events.Rule]:
    """``orchestrator`` and, when ``notify.on`` names any status, ``notifier``: only the
    trigger's events (its source, the configured database: ``runtime.patterns``)."""
    origin = {
        "database": store.database,
        "statuses_collection": store.statuses_collection,
        "source_prefix": source_prefix,
    }
    rules = {
        "orchestrator": events.Rule(
            scope,
            "OrchestratorRule",
            description=f"Status events that advance runs of {workflow.name}",
            event_bus=event_bus,
            event_pattern=event_pattern(patterns.orchestrator_pattern(workflow.name, **origin)),
            targets=[rule_target(orchestrator, dead_letter_queue)],
        )
    }
    if workflow.notify.on:
        rules["notifier"] = events.Rule(
            scope,
            "NotifierRule",
            description=f"Status events of {workflow.name} that people are told about",
            event_bus=event_bus,
            event_pattern=event_pattern(
                patterns.notifier_pattern(workflow.name, workflow.notify.on, **origin)
            ),
            targets=[rule_target(notifier, dead_letter_queue)],
        )
    return rules


def rule_target(function: lambda_.IFunction, dead_letter_queue: sqs.IQueue) -> targets.LambdaFunction:
    return targets.LambdaFunction(
        function,
        dead_letter_queue=dead_letter_queue,
        retry_attempts=RULE_RETRY_ATTEMPTS,
        max_event_age=RULE_MAX_EVENT_AGE,
    )
