"""Where status events come from: the event bus the workflow rules listen on.

Three wirings (docs/architecture.md, "Trigger wirings"): an Atlas database trigger created
here, feeding a partner event bus; a partner event source someone created by hand in Atlas;
or an existing bus.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from aws_cdk import Aws
from aws_cdk import aws_events as events

from constructs import Construct
from runtime.settings import StoreSettings

if TYPE_CHECKING:
    from awscdk_resources_mongodbatlas import CfnTrigger

PARTNER_SOURCE_PREFIX = "aws.partner/mongodb.com/stitch.trigger/"
"""Atlas names the partner event source after the trigger's id."""


@dataclass(frozen=True, kw_only=True)
class AtlasTrigger:
    """Create the Atlas database trigger (``MongoDB::Atlas::Trigger``) and its partner bus."""

    project_id: str
    """Atlas project id."""
    app_id: str
    """Atlas App Services application id the trigger belongs to."""
    service_id: str
    """Id of the App Services data source linked to the cluster holding the statuses."""
    profile: str = "default"
    """Atlas API key profile: the secret ``cfn/atlas/profile/<profile>``; default ``default``."""
    name: str = "workflow-statuses"
    """Trigger name in App Services; default ``workflow-statuses``."""


@dataclass(frozen=True, kw_only=True)
class PartnerEventSource:
    """Attach a bus to an Atlas partner event source created outside this app."""

    name: str
    """``aws.partner/mongodb.com/stitch.trigger/<trigger id>``."""


@dataclass(frozen=True, kw_only=True)
class ExistingEventBus:
    """Listen on a bus that already exists (the account's ``default`` bus, or one made elsewhere)."""

    name_or_arn: str
    """Bus name, or its ARN (``arn:...:event-bus/<name>``) for a bus in another stack or account."""


TriggerWiring = AtlasTrigger | PartnerEventSource | ExistingEventBus


@dataclass(frozen=True, kw_only=True)
class StatusEventsProps:
    wiring: TriggerWiring
    """How inserts into the statuses collection reach EventBridge."""
    store: StoreSettings = StoreSettings()
    """Database and collection the trigger watches; default ``StoreSettings()``."""


class StatusEvents(Construct):
    """The event bus carrying status inserts, and the Atlas trigger when this app creates it."""

    def __init__(self, scope: Construct, construct_id: str, props: StatusEventsProps) -> None:
        super().__init__(scope, construct_id)
        self._trigger: CfnTrigger | None = None
        wiring = props.wiring
        if isinstance(wiring, AtlasTrigger):
            self._trigger = self._atlas_trigger(wiring, props.store)
            self._event_bus: events.IEventBus = events.EventBus(
                self, "Bus", event_source_name=PARTNER_SOURCE_PREFIX + self._trigger.attr_id
            )
        elif isinstance(wiring, PartnerEventSource):
            self._event_bus = events.EventBus(self, "Bus", event_source_name=wiring.name)
        elif wiring.name_or_arn.startswith("arn:"):
            self._event_bus = events.EventBus.from_event_bus_arn(self, "Bus", wiring.name_or_arn)
        else:
            self._event_bus = events.EventBus.from_event_bus_name(self, "Bus", wiring.name_or_arn)

    @property
    def event_bus(self) -> events.IEventBus:
        return self._event_bus

    @property
    def trigger(self) -> CfnTrigger | None:
        """The Atlas trigger, or ``None`` when the events come from elsewhere."""
        return self._trigger

    def _atlas_trigger(self, wiring: AtlasTrigger, store: StoreSettings) -> CfnTrigger:
        # Imported here: loading the Atlas resource library costs every synth a few hundred ms,
        # and only this wiring needs it.
        from awscdk_resources_mongodbatlas import (
            CfnTrigger,
            DatabaseConfig,
            DatabaseConfigOperationTypes,
            Event,
            EventAwseventbridge,
            EventAwseventbridgeAwsConfig,
        )

        trigger = CfnTrigger(
            self,
            "Trigger",
            project_id=wiring.project_id,
            app_id=wiring.app_id,
            name=wiring.name,
            type="DATABASE",
            profile=wiring.profile,
            database_trigger=DatabaseConfig(
                service_id=wiring.service_id,
                database=store.database,
                collection=store.statuses_collection,
                operation_types=[DatabaseConfigOperationTypes.INSERT],
                full_document=True,
            ),
            event_processors=Event(
                awseventbridge=EventAwseventbridge(
                    aws_config=EventAwseventbridgeAwsConfig(account_id=Aws.ACCOUNT_ID, region=Aws.REGION)
                )
            ),
        )
        # cfn-lint has no schema for this third-party type (E3006); our template tests check it.
        trigger.add_metadata("cfn-lint", {"config": {"ignore_checks": ["E3006"]}})
        return trigger
