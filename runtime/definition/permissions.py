"""A job's ``permissions``: IAM statements for that job's role alone, checked before synthesis so a
statement IAM would refuse, or one that grants far more than it names, never deploys.

The rule is one sentence: a wildcard may complete a name, never stand for all of it. So
``s3:Get*`` and ``arn:aws:s3:::bucket/*`` are fine; ``*``, ``s3:*``, ``*:GetObject``, a bare ``*``
resource and ``arn:aws:s3:::*`` are refused. Actions IAM only grants on ``*`` (a few, such as
``cloudwatch:PutMetricData``) are granted in CDK instead, where a reviewer sees them:
``workflow.job_role("<job>").add_to_policy(...)``.
"""

from __future__ import annotations

import json
import re
from typing import TypeGuard

from runtime.definition.draft import known_fields
from runtime.definition.model import Permission
from runtime.definition.report import JsonPath, Report, show

PERMISSIONS_MAX_CHARACTERS = 6144
"""Of one job's statements as IAM counts them (JSON without spaces). IAM allows 10,240 for all
inline policies of a role together; the rest is left to what every job's role has (the secret, the
log group, the orchestrator as on-failure destination) and to grants made in CDK."""

_SERVICE = re.compile(r"[a-z0-9-]+")
_ACTION_NAME = re.compile(r"[A-Za-z0-9*?]+")
_PARTITION = re.compile(r"aws(-[a-z]+)*")
_REGION = re.compile(r"([a-z]{2}(-[a-z]+)+-[0-9]+)?")
_ACCOUNT = re.compile(r"([0-9]{12}|aws)?")
_WILDCARDS_ONLY = re.compile(r"[*?]+")
_WILDCARDS_AND_SEPARATORS = re.compile(r"[*?/:]+")

_ARN_FORM = "arn:<partition>:<service>:<region>:<account>:<resource>"
_EXAMPLE_ARN = "arn:aws:s3:::my-bucket/*"
_CDK_GRANT = "grant it in CDK instead: workflow.job_role(<job>).add_to_policy(...)"


def read_permissions(raw: object, path: JsonPath, report: Report) -> tuple[Permission, ...]:
    """The well-formed statements of ``raw``; the schema reports shapes, this the names in them."""
    if not isinstance(raw, list):
        return ()
    permissions: list[Permission] = []
    for index, item in enumerate(raw):
        statement = known_fields(item, "permission")
        actions, resources = statement.get("actions"), statement.get("resources")
        if not (_strings(actions) and _strings(resources)):
            continue
        problems = len(report.problems)
        for position, action in enumerate(actions):
            _check_action(action, (*path, index, "actions", position), report)
        for position, resource in enumerate(resources):
            _check_resource(resource, (*path, index, "resources", position), report)
        if len(report.problems) == problems:
            permissions.append(Permission(actions=tuple(actions), resources=tuple(resources)))
    size = len(json.dumps([p.to_document() for p in permissions], separators=(",", ":")))
    if size > PERMISSIONS_MAX_CHARACTERS:
        report.add(
            path,
            f"the statements take {size} characters; a job may have {PERMISSIONS_MAX_CHARACTERS} (IAM "
            "allows 10,240 for all of a role's policies): use wildcards that complete a name "
            f"('s3:Get*', '{_EXAMPLE_ARN}'), or {_CDK_GRANT}",
        )
    return tuple(permissions)


def _strings(value: object) -> TypeGuard[list[str]]:
    """A non-empty list of non-empty strings: anything else is the schema's to report."""
    return isinstance(value, list) and bool(value) and all(isinstance(item, str) and item for item in value)


def _check_action(action: str, path: JsonPath, report: Report) -> None:
    service, colon, name = action.partition(":")
    if _WILDCARDS_ONLY.fullmatch(action.replace(":", "")):
        report.add(
            path,
            f"action {show(action)} grants every action of every service; name the actions the job "
            "needs, e.g. 's3:GetObject'",
        )
    elif not colon or not _SERVICE.fullmatch(service) or not _ACTION_NAME.fullmatch(name):
        report.add(
            path,
            f"action {show(action)} is not '<service>:<Action>' (a lower-case service prefix, a colon, "
            "then letters and digits, with '*' or '?' to complete the name), e.g. 's3:GetObject' or "
            "'s3:Get*'",
        )
    elif _WILDCARDS_ONLY.fullmatch(name):
        report.add(
            path,
            f"action {show(action)} grants every {service} action; name the ones the job needs, "
            f"e.g. '{service}:Get*'",
        )


def _check_resource(resource: str, path: JsonPath, report: Report) -> None:
    parts = resource.split(":", 5)
    if _WILDCARDS_ONLY.fullmatch(resource):
        report.add(
            path,
            f"resource {show(resource)} is every resource in the account; write the ARN of what the job "
            f"reads or writes ({_ARN_FORM}, e.g. '{_EXAMPLE_ARN}'); for an action IAM grants only on "
            f"'*', {_CDK_GRANT}",
        )
    elif len(parts) < 6 or parts[0] != "arn":
        report.add(path, f"resource {show(resource)} is not an ARN: write {_ARN_FORM}, e.g. '{_EXAMPLE_ARN}'")
    else:
        _check_arn_parts(resource, parts, path, report)


def _check_arn_parts(resource: str, parts: list[str], path: JsonPath, report: Report) -> None:
    _, partition, service, region, account, rest = parts
    checks = (
        (_PARTITION, partition, "partition", "aws, aws-cn, aws-us-gov, ..."),
        (_SERVICE, service, "service", "e.g. s3, dynamodb"),
        (_REGION, region, "region", "e.g. eu-west-1, or empty"),
        (_ACCOUNT, account, "account", "12 digits, or empty"),
    )
    wrong = [
        f"{what} {show(value)} ({right})" for rule, value, what, right in checks if not rule.fullmatch(value)
    ]
    if wrong:
        report.add(
            path,
            f"resource {show(resource)} is not a well-formed ARN ({_ARN_FORM}, wildcards only in the "
            f"resource part): {'; '.join(wrong)}",
        )
    elif not rest or any(character.isspace() for character in rest):
        report.add(
            path, f"resource {show(resource)} has an empty or blank resource part; e.g. '{_EXAMPLE_ARN}'"
        )
    elif _WILDCARDS_AND_SEPARATORS.fullmatch(rest):
        report.add(
            path,
            f"resource {show(resource)} is every {service} resource; name the ones the job needs, "
            f"e.g. '{_EXAMPLE_ARN}'",
        )
