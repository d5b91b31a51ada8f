"""Where status events come from: the event bus the workflow rules listen on.

Three wirings (docs/architecture.md, "Trigger wirings"): an Atlas database trigger created
here, feeding a partner event bus; a partner event source someone created by hand in Atlas;
or an existing bus.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from aws_cdk import Aws
from aws_cdk import aws_events as events

from constructs import Construct
from runtime.contracts import PARTNER_SOURCE_PREFIX
from runtime.definition.model import Workflow
from runtime.statuses import NOTIFY_EVENTS, ORCHESTRATOR_STATUSES
from runtime.store.settings import StoreSettings

if TYPE_CHECKING:
    from awscdk_resources_mongodbatlas import CfnTrigger

AUTO_RESUME = False
"""Atlas's auto-resume (``TolerateResumeErrors``) restarts a suspended trigger at the next change
whose resume token is gone from the oplog, silently skipping every insert made while it was
suspended: the skipped ``success`` reports would leave their runs waiting forever. Off until a
reconciler replays a run's statuses; until then a suspended trigger stays suspended, the
workflow's ``StatusEventsStoppedAlarm`` says so, and an operator restarts it in Atlas (resuming
from the token when it is still in the oplog loses nothing)."""

ALL_CONSUMED_STATUSES = tuple(sorted({*ORCHESTRATOR_STATUSES, *NOTIFY_EVENTS}))
"""Every status the orchestrator acts on or a spec's ``notify.on`` may name."""


def consumed_statuses(workflows: Iterable[Workflow]) -> tuple[str, ...]:
    """The statuses some rule of these workflows matches: the orchestrator's, plus each spec's
    ``notify.on``. A union over all specs (not one clause per workflow), so the trigger's filter
    stays one short ``$in`` however many workflows share it; the rules still match per workflow."""
    statuses = set(ORCHESTRATOR_STATUSES)
    for workflow in workflows:
        statuses.update(workflow.notify.on)
    return tuple(sorted(statuses))


def trigger_match(statuses: Sequence[str]) -> str:
    """The Atlas trigger's ``$match`` over change events (a JSON string, as Atlas takes it)."""
    return json.dumps({"fullDocument.status": {"$in": sorted(statuses)}}, separators=(",", ":"))


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
    bus_exists: bool = False
    """True when the source is already associated with its bus (EventBridge console, "Associate
    with event bus", makes a bus named like the source): the bus is then imported by name, since
    creating a second bus for the source fails. Default ``False``: this app creates the bus,
    which is the association."""


@dataclass(frozen=True, kw_only=True)
class ExistingEventBus:
    """Listen on a bus that already exists (the account's ``default`` bus, or one made elsewhere)."""

    name_or_arn: str
    """Bus name, or its ARN (``arn:...:event-bus/<name>``) for a bus in another stack or account."""
    source_prefix: str = PARTNER_SOURCE_PREFIX
    """What the ``source`` of the status events on this bus begins with; the rules match nothing
    else. Default the Atlas partner sources' prefix: an Atlas trigger's events keep their source
    when a rule forwards them here, and ``PutEvents`` refuses a ``source`` beginning with
    ``aws.``, so nobody else can put an event the rules accept. Any other prefix can be put by
    whoever may ``events:PutEvents`` on the bus."""


TriggerWiring = AtlasTrigger | PartnerEventSource | ExistingEventBus


def source_prefix(wiring: TriggerWiring) -> str:
    """What the ``source`` of the wiring's status events begins with (``StatusEvents.source_prefix``)."""
    if isinstance(wiring, PartnerEventSource):
        return wiring.name
    if isinstance(wiring, ExistingEventBus):
        return wiring.source_prefix
    return PARTNER_SOURCE_PREFIX


@dataclass(frozen=True, kw_only=True)
class StatusEventsProps:
    wiring: TriggerWiring
    """How inserts into the statuses collection reach EventBridge."""
    store: StoreSettings = StoreSettings()
    """Database and collection the trigger watches; default ``StoreSettings()``."""
    forwarded_statuses: Sequence[str] = ALL_CONSUMED_STATUSES
    """Statuses the Atlas trigger forwards (``consumed_statuses`` of the workflows on the bus);
    default ``ALL_CONSUMED_STATUSES``. Others (``started``, mostly) cost a trigger execution and
    an event each and no rule would match them."""


class StatusEvents(Construct):
    """The event bus carrying status inserts, and the Atlas trigger when this app creates it."""

    def __init__(self, scope: Construct, construct_id: str, props: StatusEventsProps) -> None:
        super().__init__(scope, construct_id)
        self._trigger: CfnTrigger | None = None
        self._version = hashlib.sha256(
            json.dumps([type(props.wiring).__name__, asdict(props.wiring)], sort_keys=True).encode()
        ).hexdigest()
        wiring = props.wiring
        self._source_prefix = source_prefix(wiring)
        if isinstance(wiring, AtlasTrigger):
            self._trigger = self._atlas_trigger(wiring, props.store, props.forwarded_statuses)
            self._event_bus: events.IEventBus = events.EventBus(
                self, "Bus", event_source_name=PARTNER_SOURCE_PREFIX + self._trigger.attr_id
            )
        elif isinstance(wiring, PartnerEventSource) and wiring.bus_exists:
            self._event_bus = events.EventBus.from_event_bus_name(self, "Bus", wiring.name)
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
    def source_prefix(self) -> str:
        """What the ``source`` of the status events begins with: the rules accept no other event.
        A partner bus carries only its own source, named by the wiring, or for a trigger this app
        creates (whose id is known only once deployed) the Atlas partner sources' prefix."""
        return self._source_prefix

    @property
    def trigger(self) -> CfnTrigger | None:
        """The Atlas trigger, or ``None`` when the events come from elsewhere."""
        return self._trigger

    @property
    def version(self) -> str:
        """A hash of the wiring: changes whenever the bus the rules must listen on may move (a
        replaced trigger makes a new partner source and bus under the same logical id)."""
        return self._version

    def _atlas_trigger(
        self, wiring: AtlasTrigger, store: StoreSettings, forwarded_statuses: Sequence[str]
    ) -> CfnTrigger:
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
                match=trigger_match(forwarded_statuses),
                # Ordered processing runs one event at a time for the whole collection; nothing
                # downstream relies on order (EventBridge and Lambda reorder events anyway).
                unordered=True,
                tolerate_resume_errors=AUTO_RESUME,
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
