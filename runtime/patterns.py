"""EventBridge event patterns: the one definition the constructs synthesize the rules from and
the local runner routes with. Standard library only (the constructs import it too)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from runtime.documents.run import ANSWER_STATUSES, OPERATION_STATUSES, StatusName

ORCHESTRATOR_STATUSES = tuple(
    status.value
    for status in (
        StatusName.WORKFLOW_STARTED,
        StatusName.SUCCESS,
        StatusName.FAILED,
        *OPERATION_STATUSES,
        StatusName.TIMER_FIRED,
        *ANSWER_STATUSES,
    )
)
"""Statuses the orchestrator acts on: the run's start, a job attempt's end, the operations
people ask for (cancel, redrive, an approval's answer) and timers firing; ``started`` and the
engine's own run-level statuses would only cost it invocations."""


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
