"""EventBridge event patterns: the one definition the constructs synthesize the rules from and
the local runner routes with. Standard library only (the constructs import it too)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from runtime.statuses import ORCHESTRATOR_STATUSES


def _insert_pattern(workflow: str, statuses_collection: str, statuses: Iterable[str]) -> dict[str, Any]:
    return {
        "detail": {
            "operationType": ["insert"],
            "ns": {"coll": [statuses_collection]},
            "fullDocument": {"workflow": [workflow], "status": sorted(set(statuses))},
        }
    }


def orchestrator_pattern(workflow: str, statuses_collection: str = "statuses") -> dict[str, Any]:
    """Inserts into ``statuses`` that advance a run of ``workflow``."""
    return _insert_pattern(workflow, statuses_collection, ORCHESTRATOR_STATUSES)


def notifier_pattern(
    workflow: str, notify_on: Iterable[str], statuses_collection: str = "statuses"
) -> dict[str, Any]:
    """Inserts into ``statuses`` of the kinds the spec's ``notify.on`` names."""
    return _insert_pattern(workflow, statuses_collection, notify_on)
