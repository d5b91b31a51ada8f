"""The limits of the services a run passes through, stated once, and how the runtime measures
against them.

A run stalls when something it writes or sends is refused for its size: a status event that
EventBridge will not carry, a job event Lambda will not accept, a run document MongoDB will not
store. Every such write or send is checked against the limit here before it is made, so what
does not fit fails an attempt or the run with the reason instead (docs/architecture.md,
"Limits").

Standard library only: the handlers import it inside Lambda.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

EVENTBRIDGE_ENTRY_BYTES = 256 * 1024
"""EventBridge's limit on one event entry: every status document travels in one (the Atlas
trigger's ``fullDocument``)."""

LAMBDA_ASYNC_PAYLOAD_BYTES = 1024 * 1024
"""Lambda's limit on an asynchronous invocation's payload (raised from 256 KB to 1 MB in 2025):
a job event, and the on-failure record that carries it back to the orchestrator."""

MONGODB_DOCUMENT_BYTES = 16 * 1024 * 1024
"""MongoDB's limit on one document (BSON)."""

MONGODB_NESTING_DEPTH = 100
"""MongoDB's documented limit on nested documents and arrays in one document."""

JSON_SAFE_INTEGER = 2**53 - 1
"""The largest integer a JavaScript number holds exactly. The Atlas trigger turns each status
document into JSON in JavaScript, so a larger integer in an output would reach the orchestrator
changed: such an output is kept by reference, as JSON text (``runtime.documents.outputs``)."""

OUTPUT_INLINE_MAX_BYTES = EVENTBRIDGE_ENTRY_BYTES // 2
"""A job's output, as JSON, that travels in events: half an EventBridge entry, which the success
event carries it in (with the envelope's fields and JSON's escapes that may grow it). A larger
one is kept by reference (``runtime.store.outputs``)."""

OUTPUT_MAX_BYTES = 64 * 1024 * 1024
"""A job's output, as JSON, at most: kept by reference (in GridFS past one MongoDB document), and
held in memory by the job wrapper of each job that gets it in its ``results``."""

OUTPUT_READ_MAX_BYTES = 4 * 1024 * 1024
"""The outputs kept by reference, as JSON, that the orchestrator loads in one decision for the
``when`` and ``for_each`` expressions that read them. It runs in 256 MB (so does the reconciler,
which decides through it), and JSON grows as Python objects: about 8 times for an array of small
records, about 25 times for an array of empty objects, so 4 MB of JSON can take 100 MB. The size
is checked before anything is loaded (``runtime.store.outputs``); past it the job whose
expression reads the output fails, and the run with it, with the sizes."""

OUTPUT_MAX_DEPTH = MONGODB_NESTING_DEPTH - 10
"""Levels of nesting in a job's output kept in the run document (a deeper one is kept by
reference): the run document holds it three levels down (the run,
its jobs, the job), the rest is margin."""

JOB_EVENT_MAX_BYTES = LAMBDA_ASYNC_PAYLOAD_BYTES - 64 * 1024
"""A job event, as JSON (the run input and the outputs of the jobs it runs after): Lambda's
payload limit less room for the on-failure record, which carries the event with Lambda's own
fields and the error."""

RUN_DOCUMENT_MAX_BYTES = MONGODB_DOCUMENT_BYTES - 64 * 1024
"""What a write may make of a run document: MongoDB's limit less room for what every write adds
besides the planned changes (timestamps, the version)."""

LAMBDA_ENVIRONMENT_BYTES = 4 * 1024
"""Lambda's limit on a function's environment variables: the keys and the values together
(https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html). Past it the deploy
fails in CloudFormation and rolls back; ``environment_bytes`` measures against it."""

DEPLOYED_ENVIRONMENT_BYTES = 512
"""What the deploy adds to a job's ``env``, at most: the store's settings (the connection
secret's ARN, the database and collection names) and ``JOB_HANDLER``. The constructs measure
their own part when they synthesize; the spec's ``env`` gets the rest."""

JOB_ENV_MAX_BYTES = LAMBDA_ENVIRONMENT_BYTES - DEPLOYED_ENVIRONMENT_BYTES
"""A job's ``env`` (its own and ``defaults.env``), keys and values, at most."""

ERROR_MESSAGE_MAX_CHARS = 4000
"""An error message keeps its head and its tail within this; the middle is cut."""

ERROR_TRACE_MAX_CHARS = 4000
"""The traceback kept with an error: its last frames, within this."""


def json_bytes(value: Any) -> int:
    """The size of ``value`` as the JSON the runtime sends (``json.dumps``' defaults, as boto3's
    payload and the trigger's envelope are made)."""
    return len(json.dumps(value).encode())


def environment_bytes(environment: Mapping[str, str]) -> int:
    """The size of environment variables as Lambda counts it: every key and every value, in
    UTF-8 bytes (no separators)."""
    return sum(len(key.encode()) + len(value.encode()) for key, value in environment.items())


def bson_bytes(value: Any) -> int:
    """The size of ``value`` as a BSON field value: exact for what the runtime stores (JSON
    values, dates, documents and arrays of them)."""
    if value is None:
        return 0
    if isinstance(value, bool):
        return 1
    if isinstance(value, int):
        return 4 if -(2**31) <= value < 2**31 else 8
    if isinstance(value, (float, datetime)):
        return 8
    if isinstance(value, str):
        return 4 + len(value.encode()) + 1
    if isinstance(value, Mapping):
        return 4 + sum(field_bytes(str(key), item) for key, item in value.items()) + 1
    if isinstance(value, (list, tuple)):
        return 4 + sum(field_bytes(str(index), item) for index, item in enumerate(value)) + 1
    return 16  # an ObjectId (12) or another small scalar; nothing the runtime writes is larger


def field_bytes(key: str, value: Any) -> int:
    """The size of one BSON field: its type byte, its name and its value."""
    return 1 + len(key.encode()) + 1 + bson_bytes(value)


def bounded(text: str, limit: int = ERROR_MESSAGE_MAX_CHARS) -> str:
    """``text`` within ``limit`` characters: its head and its tail, with how much was cut."""
    if len(text) <= limit:
        return text
    keep = (limit - 40) // 2
    return f"{text[:keep]}\n[... {len(text) - 2 * keep} characters cut ...]\n{text[-keep:]}"


LAMBDA_RETRY_DELAY = timedelta(seconds=50)
"""Lambda retries a failed asynchronous invocation of the orchestrator a minute later at the
earliest (a little less here, for clock differences): an event that repeats sooner is a
duplicate, not a retry after a crash, and the replay does not dispatch again for it. (Nothing
else depends on timing: the job wrapper's lease does not.)"""
