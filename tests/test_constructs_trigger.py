"""The three trigger wirings (docs/architecture.md, "Trigger wirings"). cfn-lint has no schema for
``MongoDB::Atlas::Trigger``, so the trigger's properties are checked here."""

from __future__ import annotations

import pytest
from aws_cdk import Stack
from aws_cdk import aws_events as events
from aws_cdk.assertions import Match, Template

from constructs.trigger import (
    PARTNER_SOURCE_PREFIX,
    AtlasTrigger,
    ExistingEventBus,
    PartnerEventSource,
    StatusEvents,
    StatusEventsProps,
    TriggerWiring,
)
from runtime.settings import StoreSettings
from tests.cdk_fixtures import make_app


def status_events(wiring: TriggerWiring, store: StoreSettings | None = None) -> tuple[StatusEvents, Template]:
    stack = Stack(make_app(), "Shared")
    construct = StatusEvents(
        stack, "StatusEvents", StatusEventsProps(wiring=wiring, store=store or StoreSettings())
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
