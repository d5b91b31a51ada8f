"""Parsing what reaches the handlers: Atlas trigger envelopes (around a ``StatusEvent``, plain
JSON or Extended JSON), Lambda's on-failure records, job events.

Every parser raises ``EventError`` saying what is wrong; the handlers log it and drop the event,
so a malformed event never makes Lambda retry it forever.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from bson import json_util

from runtime.documents.callbacks import CALLBACK_TOKEN
from runtime.documents.events import ATTEMPT_KEY, FailureRecord, JobEvent
from runtime.documents.run import StatusEvent, required, status_from_document
from runtime.errors import EventError

_HEX_KEY = re.compile(r"[0-9a-f]{64}")


def as_mapping(event: object) -> Mapping[str, Any]:
    """Accept a dict, or a JSON text of one (what a test or a hand-made invoke may send)."""
    if isinstance(event, (bytes, str)):
        try:
            event = json.loads(event)
        except ValueError as exc:
            raise EventError(f"event is not JSON: {exc}") from exc
    if not isinstance(event, Mapping):
        raise EventError(f"event must be a JSON object, got {type(event).__name__}")
    return event


def is_failure_record(event: Mapping[str, Any]) -> bool:
    return "requestContext" in event and "requestPayload" in event


HANDOFF = "handoff"
"""The one field of a job function's direct hand-off to the orchestrator (``delivery: fast``):
the ``_id`` of the terminal report it has just recorded, nothing else."""

HANDOFF_ID_MAX_CHARS = 1024
"""Longer than any terminal report's ``_id`` (a run id, a job name, the attempt and a slot)."""


def handoff_payload(status_id: str) -> dict[str, str]:
    """What the job wrapper sends: the recorded report's id. The orchestrator reads the report
    itself, so whoever sends this can at most make it read a genuine status again."""
    return {HANDOFF: status_id}


def handed_off_id(event: Mapping[str, Any]) -> str | None:
    """The status id of a hand-off; None when ``event`` is not one."""
    if HANDOFF not in event:
        return None
    status_id = event[HANDOFF]
    if not isinstance(status_id, str) or not 0 < len(status_id) <= HANDOFF_ID_MAX_CHARS:
        raise EventError(
            f"'{HANDOFF}' must be a status id (a string of 1 to {HANDOFF_ID_MAX_CHARS} characters)"
        )
    return status_id


def parse_status_event(event: object) -> StatusEvent:
    """An EventBridge event in the Atlas trigger shape, plain JSON or Extended JSON."""
    envelope = as_mapping(event)
    detail = envelope.get("detail")
    if not isinstance(detail, Mapping):
        raise EventError("event has no 'detail' object: not an Atlas trigger event")
    if detail.get("operationType") != "insert":
        raise EventError(f"operationType is {detail.get('operationType')!r}, only 'insert' is handled")
    raw = detail.get("fullDocument")
    if not isinstance(raw, Mapping):
        raise EventError("detail has no 'fullDocument' object")
    # Extended JSON ({"$numberInt": "1"}, {"$date": ...}) decodes to Python values; plain JSON is
    # left as it is.
    return status_from_document(json_util.loads(json.dumps(raw, default=str)), "fullDocument")


def parse_job_event(event: object) -> JobEvent:
    payload = as_mapping(event)
    where = "job event"
    results = payload.get("results") or {}
    if not isinstance(results, Mapping):
        raise EventError(f"{where}: 'results' must be an object")
    attempt = required(payload, "attempt", int, where)
    if attempt < 1:
        raise EventError(f"{where}: attempt must be >= 1, got {attempt}")
    failure = payload.get("failure")
    if failure is not None and not isinstance(failure, Mapping):
        raise EventError(f"{where}: 'failure' must be an object")
    failures = payload.get("failures") or {}
    if not isinstance(failures, Mapping) or not all(isinstance(item, Mapping) for item in failures.values()):
        raise EventError(f"{where}: 'failures' must map job names to objects")
    outcome = payload.get("run")
    if outcome is not None and not isinstance(outcome, Mapping):
        raise EventError(f"{where}: 'run' must be an object")
    references = payload.get("references") or {}
    if not isinstance(references, Mapping) or not all(isinstance(ref, str) for ref in references.values()):
        raise EventError(f"{where}: 'references' must map job names to references")
    index = payload.get("index")
    if index is not None and (isinstance(index, bool) or not isinstance(index, int) or index < 0):
        raise EventError(f"{where}: 'index' must be an item's index >= 0, got {index!r}")
    attempt_key = payload.get(ATTEMPT_KEY)
    if attempt_key is not None and (not isinstance(attempt_key, str) or not _HEX_KEY.fullmatch(attempt_key)):
        raise EventError(f"{where}: '{ATTEMPT_KEY}' must be the attempt's key as 64 hex digits")
    token = payload.get(CALLBACK_TOKEN)
    if token is not None and not isinstance(token, str):
        raise EventError(f"{where}: '{CALLBACK_TOKEN}' must be the attempt's callback token as a string")
    return JobEvent(
        run_id=required(payload, "run_id", str, where),
        workflow=required(payload, "workflow", str, where),
        phase=required(payload, "phase", str, where),
        job=required(payload, "job", str, where),
        attempt=attempt,
        input=payload.get("input"),
        results=dict(results),
        failure=None if failure is None else dict(failure),
        failures={name: dict(item) for name, item in failures.items()},
        run=None if outcome is None else dict(outcome),
        references=dict(references),
        index=index,
        item=payload.get("item"),
        attempt_key=attempt_key,
        callback=token is not None,
        callback_token=token,
    )


def parse_failure_record(event: Mapping[str, Any]) -> FailureRecord:
    context = event.get("requestContext")
    if not isinstance(context, Mapping):
        raise EventError("on-failure record: 'requestContext' must be an object")
    job_event = parse_job_event(event.get("requestPayload"))
    response = event.get("responsePayload")
    if isinstance(response, Mapping):
        detail = f"{response.get('errorType', 'Error')}: {response.get('errorMessage', '')}".strip()
    else:
        detail = "no response"
    condition = str(context.get("condition", "unknown"))
    return FailureRecord(
        job_event=job_event,
        request_id=str(context.get("requestId", "")),
        condition=condition,
        error=f"Lambda gave up on the invocation ({condition}): {detail}",
    )
