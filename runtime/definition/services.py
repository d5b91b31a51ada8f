"""What the jobs that run no code of their own need at run time, without the spec loader (which
the Lambda layer does not bundle): the AWS service calls a ``call`` job can make (``CALLS``), how
its resource is named, and the ``{...}`` parts of an ``http`` job's URL. Standard library only."""

from __future__ import annotations

import re
from dataclasses import dataclass

URL_PARTS = re.compile(r"\{([^{}]+)\}")
"""The ``{expression}`` parts of an ``http`` job's URL."""


@dataclass(frozen=True)
class CallKind:
    """How one ``(service, action)`` is made with boto3, and what its role is granted."""

    client: str
    """boto3's client name."""
    method: str
    resource_parameter: str
    """The parameter the ``resource`` goes in (for ``put_events``, each entry's)."""
    iam_action: str
    arn_service: str
    arn_resource: str
    """The ARN's resource type before the name (``event-bus/``), empty when the name follows
    the account directly (``arn:aws:sqs:REGION:ACCOUNT:NAME``)."""


CALLS: dict[tuple[str, str], CallKind] = {
    ("sqs", "send_message"): CallKind("sqs", "send_message", "QueueUrl", "sqs:SendMessage", "sqs", ""),
    ("sns", "publish"): CallKind("sns", "publish", "TopicArn", "sns:Publish", "sns", ""),
    ("events", "put_events"): CallKind(
        "events", "put_events", "EventBusName", "events:PutEvents", "events", "event-bus/"
    ),
    ("lambda", "invoke"): CallKind(
        "lambda", "invoke", "FunctionName", "lambda:InvokeFunction", "lambda", "function:"
    ),
    ("stepfunctions", "start_execution"): CallKind(
        "stepfunctions",
        "start_execution",
        "stateMachineArn",
        "states:StartExecution",
        "states",
        "stateMachine:",
    ),
}
"""The service calls a job can make without code."""

SQS_URL = re.compile(r"^https://sqs\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/(\d{12})/([A-Za-z0-9_.-]+)$")


def queue_url(resource: str) -> str:
    """An SQS queue's URL, from its URL or its ARN."""
    if resource.startswith("arn:"):
        _, partition, _, region, account, name = resource.split(":", 5)
        suffix = ".cn" if partition == "aws-cn" else ""
        return f"https://sqs.{region}.amazonaws.com{suffix}/{account}/{name}"
    return resource


def resource_arn(kind: CallKind, resource: str) -> str | None:
    """The ARN of the call's resource when it can be told from what the spec wrote (an ARN, a
    queue URL); None for a bare name, which is the stack's account and region's."""
    if resource.startswith("arn:"):
        return resource
    match = SQS_URL.match(resource)
    if kind.client == "sqs" and match:
        region, account, name = match.groups()
        return f"arn:aws:sqs:{region}:{account}:{name}"
    return None
