"""What a CDK user imports to put workflows in their own app: the ``Workflow`` construct and its
props, the dependency layer every function needs, the trigger wiring that brings status events
from Atlas, the connection secret or IAM database identities (``DatabaseAccess`` with
``IamAuth`` or ``PasswordAuth``, given to ``WorkflowProps.database``), private networking
(``PrivateNetwork``, ``WorkflowProps.network``), the status key (one per app, shared by its
workflows through ``WorkflowProps.status_key``; a workflow given none makes its own), and the
loader that turns a spec file into the definition ``WorkflowProps`` takes.

    from constructs.api import DependencyLayer, DependencyLayerProps, Workflow, WorkflowProps,
        connection_secret, load_workflow

(``constructs/`` has no ``__init__.py``: it extends the ``constructs`` library's namespace.)
"""

from __future__ import annotations

from constructs.bundling import DependencyLayer, DependencyLayerProps
from constructs.connection import connection_secret, status_key_secret
from constructs.database_access import DatabaseAccess, DatabaseAuth, IamAuth, PasswordAuth
from constructs.networking import PrivateNetwork, VpcPlacement
from constructs.trigger import (
    AtlasTrigger,
    ExistingEventBus,
    PartnerEventSource,
    StatusEvents,
    StatusEventsProps,
    TriggerWiring,
)
from constructs.workflow import Workflow, WorkflowProps
from runtime.definition.loader import load_workflow

__all__ = [
    "AtlasTrigger",
    "DatabaseAccess",
    "DatabaseAuth",
    "DependencyLayer",
    "DependencyLayerProps",
    "ExistingEventBus",
    "IamAuth",
    "PartnerEventSource",
    "PasswordAuth",
    "PrivateNetwork",
    "StatusEvents",
    "StatusEventsProps",
    "TriggerWiring",
    "VpcPlacement",
    "Workflow",
    "WorkflowProps",
    "connection_secret",
    "load_workflow",
    "status_key_secret",
]
