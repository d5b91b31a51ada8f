"""The three trigger wirings (docs/architecture.md, "Trigger wirings"). cfn-lint has no schema for
``MongoDB::Atlas::Trigger``, so the trigger's properties are checked here."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

import pytest
from aws_cdk import Stack
from aws_cdk import aws_events as events
from aws_cdk.assertions import Match, Template

from constructs.trigger import (
    AUTO_RESUME,
    PARTNER_SOURCE_PREFIX,
    AtlasTrigger,
    ExistingEventBus,
    PartnerEventSource,
    StatusEvents,
    StatusEventsProps,
    TriggerWiring,
    consumed_statuses,
    trigger_match,
)
from runtime import patterns
from runtime.definition.model import Notify
from runtime.statuses import NOTIFY_EVENTS, notified_statuses
from runtime.store.settings import StoreSettings
from tests.cdk_fixtures import catch_the_fish, make_app


def status_events(
    wiring: TriggerWiring, store: StoreSettings | None = None, **props: Any
) -> tuple[StatusEvents, Template]:
    stack = Stack(make_app(), "Shared")
    construct = StatusEvents(
        stack, "StatusEvents", StatusEventsProps(wiring=wiring, store=store or StoreSettings(), **props)
    )
    return construct, Template.from_stack(stack)


@pytest.fixture(scope="module")
def atlas() -> tuple[StatusEvents, Template]:
    return status_events(
        AtlasTrigger(project_id="proj-1", app_id="app-1", service_id="svc-1", profile="ops"),
        StoreSettings(database="fishing", statuses_collection="events"),
    )


def test_atlas_trigger_watches_inserts_into_the_statuses_collection(atlas):
    _, template = atlas

    template.has_resource_properties(
        "MongoDB::Atlas::Trigger",
        {
            "ProjectId": "proj-1",
            "AppId": "app-1",
            "Profile": "ops",
            "Name": "workflow-statuses",
            "Type": "DATABASE",
            "DatabaseTrigger": {
                "ServiceId": "svc-1",
                "Database": "fishing",
                "Collection": "events",
                "OperationTypes": ["INSERT"],
                "FullDocument": True,
            },
        },
    )


def test_atlas_trigger_forwards_to_eventbridge_in_this_account_and_region(atlas):
    _, template = atlas

    template.has_resource_properties(
        "MongoDB::Atlas::Trigger",
        {
            "EventProcessors": {
                "AWSEVENTBRIDGE": {
                    "AWSConfig": {"AccountId": {"Ref": "AWS::AccountId"}, "Region": {"Ref": "AWS::Region"}}
                }
            }
        },
    )


def test_atlas_bus_is_the_partner_bus_named_after_the_trigger_id(atlas):
    construct, template = atlas
    trigger_id = template.find_resources("MongoDB::Atlas::Trigger")
    (logical_id,) = trigger_id

    source = {"Fn::Join": ["", [PARTNER_SOURCE_PREFIX, {"Fn::GetAtt": [logical_id, "Id"]}]]}
    template.has_resource_properties("AWS::Events::EventBus", {"EventSourceName": source, "Name": source})
    assert construct.trigger is not None


def test_only_the_trigger_is_exempt_from_cfn_lint_schema_checks(atlas):
    _, template = atlas

    template.has_resource(
        "MongoDB::Atlas::Trigger", {"Metadata": {"cfn-lint": {"config": {"ignore_checks": ["E3006"]}}}}
    )
    template.has_resource("AWS::Events::EventBus", {"Metadata": Match.absent()})


def test_partner_event_source_gets_a_bus_and_no_trigger():
    name = PARTNER_SOURCE_PREFIX + "65f0c0ffee"

    construct, template = status_events(PartnerEventSource(name=name))

    template.resource_count_is("MongoDB::Atlas::Trigger", 0)
    template.has_resource_properties("AWS::Events::EventBus", {"EventSourceName": name, "Name": name})
    assert construct.trigger is None


@pytest.mark.parametrize(
    ("name_or_arn", "expected_name"),
    [
        ("default", "default"),
        ("arn:aws:events:eu-west-1:123456789012:event-bus/statuses", "statuses"),
    ],
    ids=["name", "arn"],
)
def test_existing_bus_is_imported_not_created(name_or_arn, expected_name):
    stack = Stack(make_app(), "Shared")
    construct = StatusEvents(
        stack, "StatusEvents", StatusEventsProps(wiring=ExistingEventBus(name_or_arn=name_or_arn))
    )
    events.Rule(
        stack, "Listener", event_bus=construct.event_bus, event_pattern=events.EventPattern(source=["x"])
    )

    template = Template.from_stack(stack)

    template.resource_count_is("AWS::Events::EventBus", 0)
    template.resource_count_is("MongoDB::Atlas::Trigger", 0)
    template.has_resource_properties("AWS::Events::Rule", {"EventBusName": expected_name})
    assert construct.trigger is None


# --- a trigger that keeps going --------------------------------------------------------------


def trigger_properties(template: Template) -> dict[str, Any]:
    (trigger,) = template.find_resources("MongoDB::Atlas::Trigger").values()
    return dict(trigger["Properties"])


def test_atlas_trigger_is_unordered_and_does_not_auto_resume(atlas):
    _, template = atlas

    database = trigger_properties(template)["DatabaseTrigger"]

    assert database["Unordered"] is True
    assert database["TolerateResumeErrors"] is False
    assert AUTO_RESUME is False


def test_atlas_trigger_forwards_only_the_statuses_some_rule_consumes():
    fish = catch_the_fish(notify=Notify(on=("phase_completed",)))
    quiet = catch_the_fish(name="quiet", notify=Notify(on=()))
    statuses = consumed_statuses([fish, quiet])
    _, template = status_events(
        AtlasTrigger(project_id="proj-1", app_id="app-1", service_id="svc-1"), forwarded_statuses=statuses
    )

    match = json.loads(trigger_properties(template)["DatabaseTrigger"]["Match"])

    assert match == {
        "fullDocument.status": {
            "$in": [
                "approved",
                "callback_completed",
                "callback_heartbeat",
                "cancel_requested",
                "event_awaited",
                "event_received",
                "failed",
                "not_run",
                "phase_completed",
                "redrive_requested",
                "rejected",
                "success",
                "timer_fired",
                "workflow_started",
            ]
        }
    }
    assert "started" not in match["fullDocument.status"]["$in"]


def test_the_trigger_match_agrees_with_the_rule_patterns():
    """Every status a rule pattern names passes the trigger's match, and nothing else does."""
    workflows = [
        catch_the_fish(),
        catch_the_fish(name="loud", notify=Notify(on=("started", "workflow_failed"))),
    ]
    forwarded = set(json.loads(trigger_match(consumed_statuses(workflows)))["fullDocument.status"]["$in"])

    in_patterns = {
        status
        for workflow in workflows
        for pattern in (
            patterns.orchestrator_pattern(workflow.name, database="workflows"),
            patterns.notifier_pattern(workflow.name, workflow.notify.on, database="workflows"),
        )
        for status in pattern["detail"]["fullDocument"]["status"]
    }
    assert forwarded == in_patterns


def test_the_default_forwards_every_status_a_rule_could_consume(atlas):
    _, template = atlas

    match = json.loads(trigger_properties(template)["DatabaseTrigger"]["Match"])

    assert set(match["fullDocument.status"]["$in"]) == set(notified_statuses(NOTIFY_EVENTS)) | set(
        patterns.ORCHESTRATOR_STATUSES
    )
    assert "attempt_failed" not in match["fullDocument.status"]["$in"], "a choice of notify.on, no status"


def test_partner_event_source_with_an_existing_bus_imports_it():
    name = PARTNER_SOURCE_PREFIX + "65f0c0ffee"
    stack = Stack(make_app(), "Shared")
    construct = StatusEvents(
        stack, "StatusEvents", StatusEventsProps(wiring=PartnerEventSource(name=name, bus_exists=True))
    )
    events.Rule(
        stack, "Listener", event_bus=construct.event_bus, event_pattern=events.EventPattern(source=["x"])
    )

    template = Template.from_stack(stack)

    template.resource_count_is("AWS::Events::EventBus", 0)
    template.has_resource_properties("AWS::Events::Rule", {"EventBusName": name})


def test_version_changes_with_the_wiring_only():
    def version(wiring: TriggerWiring, **props: Any) -> str:
        return status_events(wiring, **props)[0].version

    atlas_wiring = AtlasTrigger(project_id="proj-1", app_id="app-1", service_id="svc-1")

    assert version(atlas_wiring) == version(atlas_wiring, forwarded_statuses=("success",))
    assert version(atlas_wiring) != version(AtlasTrigger(**{**asdict(atlas_wiring), "name": "renamed"}))
    assert version(atlas_wiring) != version(AtlasTrigger(**{**asdict(atlas_wiring), "profile": "ops"}))


@pytest.mark.parametrize(
    ("wiring", "prefix"),
    [
        (AtlasTrigger(project_id="p", app_id="a", service_id="s"), PARTNER_SOURCE_PREFIX),
        (PartnerEventSource(name=PARTNER_SOURCE_PREFIX + "65f0c0ffee"), PARTNER_SOURCE_PREFIX + "65f0c0ffee"),
        (ExistingEventBus(name_or_arn="default"), PARTNER_SOURCE_PREFIX),
        (
            ExistingEventBus(name_or_arn="default", source_prefix="com.example.statuses"),
            "com.example.statuses",
        ),
    ],
    ids=["atlas", "partner-source", "bus", "bus-with-source"],
)
def test_each_wiring_says_what_its_events_source_begins_with(wiring, prefix):
    """What the workflow rules require of ``source`` (issue 22): a partner bus's own source, the
    Atlas partner prefix where the trigger id is not known at synth, or the bus's configured one."""
    construct = StatusEvents(Stack(make_app(), "Shared"), "StatusEvents", StatusEventsProps(wiring=wiring))

    assert construct.source_prefix == prefix
