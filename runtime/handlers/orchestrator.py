"""The orchestrator function's entry point: the environment, the adapters (MongoDB, Lambda),
then one use case, ``runtime.service.orchestrator.Orchestrator.handle``, per event."""

from __future__ import annotations

import logging
import os
from typing import Any

import boto3
from botocore.config import Config

from runtime import contracts
from runtime.aws import tracing
from runtime.aws.children import LambdaChildStarter
from runtime.aws.dispatch import LambdaDispatcher
from runtime.aws.metrics import rejected_metric_line
from runtime.aws.telemetry import setup_function
from runtime.documents.run import StatusEvent
from runtime.service.orchestrator import Orchestrator
from runtime.store.connection import store_from_env

log = logging.getLogger(__name__)

DISPATCH_THREADS = 32
"""Concurrent job invocations in Lambda: a phase of 2,000 jobs is dispatched in seconds, well
within the orchestrator's timeout."""


STORE_CONNECTIONS = 4
"""The decision is one thread; of the ``DISPATCH_THREADS``, only one whose invocation Lambda
refuses writes (the attempt's failure), and more such wait for a connection."""

_state: dict[str, Orchestrator] = {}


def _build() -> Orchestrator:
    setup_function(os.environ)
    client = boto3.client("lambda", config=Config(max_pool_connections=DISPATCH_THREADS))
    dispatcher = LambdaDispatcher(client)
    store = store_from_env(os.environ, max_pool_size=STORE_CONNECTIONS, keyed=True)
    return Orchestrator(
        store=store,
        dispatcher=dispatcher,
        dispatch_threads=DISPATCH_THREADS,
        on_rejected=count_rejected,
        workflow=os.environ.get(contracts.WORKFLOW_NAME),
        children=LambdaChildStarter(client),
    )


def count_rejected(status: StatusEvent, reason: str) -> None:
    """One ``RejectedStatuses`` point per rejected status, as a CloudWatch embedded metric line
    (the workflow's alarm watches it)."""
    print(rejected_metric_line(status.workflow), flush=True)


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    """Lambda entry point (EventBridge rule target and job functions' on-failure destination)."""
    if "orchestrator" not in _state:
        _state["orchestrator"] = _build()
    try:
        outcome = _state["orchestrator"].handle(event)
    finally:
        tracing.flush()
    log.info("orchestrator: %s", outcome)
    return {
        "action": outcome.action,
        "dispatched": [d.job for d in outcome.dispatched],
        "reason": outcome.reason,
    }
