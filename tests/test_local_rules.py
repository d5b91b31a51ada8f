"""The local router applies the deployed rules' own patterns (runtime/patterns.py): an event
reaches the orchestrator or the notifier only when it is the trigger's, its ``source`` an Atlas
partner source and its ``ns.db`` the configured database (issue 22)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

import pymongo
import pytest

from cdk_app.local.atlas_events import envelope
from cdk_app.local.cloud import CloudOptions, LocalCloud, workflow_rules
from cdk_app.local.delivery import FaultSettings
from runtime.clock import utcnow
from runtime.documents.run import StatusEvent
from runtime.statuses import StatusName
from runtime.store.mongo import MongoStore
from runtime.store.settings import StoreSettings
from tests.cdk_fixtures import catch_the_fish

WORKFLOW = catch_the_fish()  # notifies on failed and workflow_succeeded


def _failed_report(store: StoreSettings, **changes: Any) -> dict[str, Any]:
    """The trigger's event for a ``failed`` report of a run of WORKFLOW, then ``changes``: a
    forged source, another database."""
    report = StatusEvent(
        run_id="run-1",
        workflow=WORKFLOW.name,
        status=StatusName.FAILED,
        phase="thinking",
        job="rent_a_boat",
        attempt=1,
        error="boom",
    )
    event = envelope(report.to_document(utcnow()), store.database, store.statuses_collection)
    if "source" in changes:
        event["source"] = changes["source"]
    if "db" in changes:
        event["detail"]["ns"]["db"] = changes["db"]
    return event


def _targets(event: dict[str, Any], store: StoreSettings) -> list[str]:
    return [
        rule.target
        for rule in workflow_rules(WORKFLOW, store)
        if rule.pattern.matches_event(cast(Any, event))
    ]


FORGED = {
    "put-events-source": {"source": "com.example.statuses"},
    "no-partner-prefix": {"source": "mongodb.com/stitch.trigger/65f0c0ffee0123456789abcd"},
    "another-database": {"db": "other_workflows"},
}


def test_the_triggers_event_reaches_both_rules():
    store = StoreSettings()

    assert _targets(_failed_report(store), store) == ["orchestrator", "notifier"]


@pytest.mark.parametrize("changes", FORGED.values(), ids=FORGED.keys())
def test_an_event_from_another_source_or_database_matches_no_rule(changes):
    store = StoreSettings()

    assert _targets(_failed_report(store, **changes), store) == []


@pytest.fixture
def cloud(mongo_client: pymongo.MongoClient[dict], store_settings: StoreSettings) -> Iterator[LocalCloud]:
    rules = workflow_rules(WORKFLOW, store_settings)
    cloud = LocalCloud(
        MongoStore(mongo_client, store_settings),
        observer=cast(Any, None),
        options=CloudOptions(faults=FaultSettings(), handler_threads=1, job_threads=1),
        rules=lambda: rules,
        job_functions=lambda event: None,
    )
    yield cloud
    cloud.close()


def test_the_router_delivers_only_the_triggers_events(cloud: LocalCloud, store_settings, monkeypatch):
    sent: list[str] = []
    monkeypatch.setattr(cloud.bus, "send", lambda target, *args, **kwargs: sent.append(target))

    for name, changes in FORGED.items():
        cloud.publish(_failed_report(store_settings, **changes), name)
    assert sent == []

    cloud.publish(_failed_report(store_settings), "genuine")
    assert sent == ["orchestrator", "notifier"]
