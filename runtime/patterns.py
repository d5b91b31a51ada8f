"""EventBridge event patterns: the one definition the constructs synthesize the rules from and
the local runner routes with. Standard library only (the constructs import it too).

A rule accepts only the trigger's events: ``source`` must begin with the trigger's source (the
Atlas partner event source, ``aws.partner/mongodb.com/stitch.trigger/<trigger id>``, by
default) and ``detail.ns.db`` must be the configured database, so an event put on the bus by
anyone else, or a trigger on another database, starts nothing."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from runtime.contracts import PARTNER_SOURCE_PREFIX
from runtime.statuses import ORCHESTRATOR_STATUSES


def _insert_pattern(
    workflow: str, statuses: Iterable[str], *, database: str, statuses_collection: str, source_prefix: str
) -> dict[str, Any]:
    if not source_prefix:
        raise ValueError("a rule's source prefix must not be empty: it would match every source")
    return {
        "source": [{"prefix": source_prefix}],
        "detail": {
            "operationType": ["insert"],
            "ns": {"db": [database], "coll": [statuses_collection]},
            "fullDocument": {"workflow": [workflow], "status": sorted(set(statuses))},
        },
    }


def orchestrator_pattern(
    workflow: str,
    *,
    database: str,
    statuses_collection: str = "statuses",
    source_prefix: str = PARTNER_SOURCE_PREFIX,
) -> dict[str, Any]:
    """The trigger's inserts into ``database.statuses_collection`` that advance a run of ``workflow``."""
    return _insert_pattern(
        workflow,
        ORCHESTRATOR_STATUSES,
        database=database,
        statuses_collection=statuses_collection,
        source_prefix=source_prefix,
    )


def notifier_pattern(
    workflow: str,
    notify_on: Iterable[str],
    *,
    database: str,
    statuses_collection: str = "statuses",
    source_prefix: str = PARTNER_SOURCE_PREFIX,
) -> dict[str, Any]:
    """The trigger's inserts into ``database.statuses_collection`` of the kinds the spec's
    ``notify.on`` names."""
    return _insert_pattern(
        workflow,
        notify_on,
        database=database,
        statuses_collection=statuses_collection,
        source_prefix=source_prefix,
    )
