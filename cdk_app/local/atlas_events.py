"""What the Atlas database trigger and EventBridge do to an insert, done locally: wrap a change
event of ``statuses`` in the Atlas EventBridge envelope (plain JSON: ObjectIds and dates as
strings), exactly the shape the deployed handlers receive."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from bson import json_util

from runtime.contracts import PARTNER_SOURCE_PREFIX
from runtime.documents import ID

LOCAL_TRIGGER_ID = "000000000000000000000000"


def _plain(value: Any) -> Any:
    """Relaxed Extended JSON, then the Atlas plain-JSON conventions for the two common types."""
    relaxed = json.loads(json_util.dumps(value, json_options=json_util.RELAXED_JSON_OPTIONS))
    return _unwrap(relaxed)


def _unwrap(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$oid"}:
            return value["$oid"]
        if set(value) == {"$date"}:
            return value["$date"]
        return {key: _unwrap(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_unwrap(item) for item in value]
    return value


def envelope(
    document: Mapping[str, Any], database: str, collection: str, trigger_id: str = LOCAL_TRIGGER_ID
) -> dict[str, Any]:
    """The EventBridge event an Atlas trigger sends for the insert of ``document``."""
    now = datetime.now(UTC)
    source = f"{PARTNER_SOURCE_PREFIX}{trigger_id}"
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": f"MongoDB Database Trigger for {database}.{collection}",
        "source": source,
        "account": "000000000000",
        "time": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": "local",
        "resources": [f"arn:aws:events:local::event-source/{source}"],
        "detail": {
            "operationType": "insert",
            "wallTime": now.isoformat(),
            "fullDocument": _plain(dict(document)),
            "ns": {"db": database, "coll": collection},
            "documentKey": {ID: _plain(document.get(ID))},
        },
    }
