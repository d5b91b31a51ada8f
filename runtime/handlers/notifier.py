"""The notifier function's entry point: SNS (and Slack, when the spec names a webhook secret)
and the store, then ``runtime.service.notifier.NotifierService`` per event."""

from __future__ import annotations

import logging
import os
from typing import Any

import boto3

from runtime import contracts
from runtime.aws.notify import SlackNotifier, SnsNotifier
from runtime.aws.telemetry import setup_function
from runtime.ports import Notifier
from runtime.service.notifier import NotifierService
from runtime.store.connection import store_from_env

log = logging.getLogger(__name__)


STORE_CONNECTIONS = 1
"""One event at a time, on one thread."""

_state: dict[str, NotifierService] = {}


def _build() -> NotifierService:
    notifiers: list[Notifier] = [SnsNotifier(boto3.client("sns"), os.environ[contracts.NOTIFY_TOPIC_ARN])]
    slack_secret = os.environ.get(contracts.SLACK_WEBHOOK_SECRET_ARN)
    if slack_secret:
        notifiers.append(SlackNotifier(boto3.client("secretsmanager"), slack_secret))
    store = store_from_env(os.environ, max_pool_size=STORE_CONNECTIONS, keyed=True)
    return NotifierService(notifiers=notifiers, store=store, claims=store)


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    """Lambda entry point (EventBridge rule target)."""
    if "service" not in _state:
        setup_function(os.environ)
        _state["service"] = _build()
    sent = _state["service"].handle(event, getattr(context, "aws_request_id", None))
    return {"sent": sent is not None, "subject": sent[0] if sent else None}
