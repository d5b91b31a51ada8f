"""What a job's spec grants its role (``permissions``, and ``invoke``'s one function), and why
cdk-nag may let its wildcards be."""

from __future__ import annotations

from aws_cdk import Acknowledgment, ArnFormat, Stack, Validations
from aws_cdk import aws_iam as iam

from runtime.definition.model import Job
from runtime.definition.services import CALLS, CallKind, resource_arn


def grant_spec_permissions(role: iam.Role, job: Job) -> None:
    """The job's ``permissions`` as statements of its own role, with cdk-nag's wildcard findings
    acknowledged for exactly the wildcards the spec wrote."""
    for permission in job.permissions:
        role.add_to_policy(
            iam.PolicyStatement(actions=list(permission.actions), resources=list(permission.resources))
        )
    if job.invoke is not None:
        role.add_to_policy(
            iam.PolicyStatement(actions=["lambda:InvokeFunction"], resources=[invoked_arn(role, job.invoke)])
        )
    if job.call is not None:
        kind = CALLS[(job.call.service, job.call.action)]
        role.add_to_policy(
            iam.PolicyStatement(
                actions=[kind.iam_action], resources=[called_arn(role, kind, job.call.resource)]
            )
        )
    if job.http is not None and job.http.secret is not None:
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["secretsmanager:GetSecretValue"], resources=[secret_arn(role, job.http.secret)]
            )
        )
    Validations.of(role).acknowledge(*spec_wildcards(job), *secret_wildcards(role, job))


def secret_arn(scope: iam.Role, secret: str) -> str:
    """The ARN of the secret an ``http`` job sends: as written, or the secret of that name in the
    stack's account and region (Secrets Manager ends its ARNs in ``-`` and six characters)."""
    if secret.startswith("arn:"):
        return secret
    return Stack.of(scope).format_arn(
        service="secretsmanager",
        resource="secret",
        resource_name=f"{secret}-??????",
        arn_format=ArnFormat.COLON_RESOURCE_NAME,
    )


def secret_wildcards(scope: iam.Role, job: Job) -> list[Acknowledgment]:
    """cdk-nag flags the ``-??????`` that completes a secret's name into its ARN."""
    if job.http is None or job.http.secret is None or job.http.secret.startswith("arn:"):
        return []
    return [
        Acknowledgment(
            id="AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:secretsmanager:<AWS::Region>:"
            f"<AWS::AccountId>:secret:{job.http.secret}-??????]",
            reason="Secrets Manager adds six characters to a secret's name in its ARN; this is the one "
            f"secret job {job.name} sends ($.phases.{job.phase}.jobs.{job.name}.http.secret).",
        )
    ]


def called_arn(scope: iam.Role, kind: CallKind, resource: str) -> str:
    """The ARN a ``call`` job acts on: as written (or from a queue URL), or the resource of that
    name in the stack's account and region."""
    known = resource_arn(kind, resource)
    if known is not None:
        return known
    return Stack.of(scope).format_arn(
        service=kind.arn_service,
        resource=kind.arn_resource.rstrip(":/"),
        resource_name=resource,
        arn_format=ArnFormat.COLON_RESOURCE_NAME
        if kind.arn_resource.endswith(":")
        else ArnFormat.SLASH_RESOURCE_NAME,
    )


def invoked_arn(scope: iam.Role, function: str) -> str:
    """The ARN an ``invoke`` job calls, exactly as written (its qualifier too, which Lambda checks
    the permission against); a name is the function of that name in the stack's account and region."""
    if function.startswith("arn:"):
        return function
    return Stack.of(scope).format_arn(
        service="lambda",
        resource="function",
        resource_name=function,
        arn_format=ArnFormat.COLON_RESOURCE_NAME,
    )


def spec_wildcards(job: Job) -> list[Acknowledgment]:
    """cdk-nag flags every ``*`` in a statement; the loader lets a spec's ``permissions`` use one only
    to complete a name (never a bare ``*``), so the spec itself is the evidence asked for."""
    findings = sorted(
        {
            f"Action::{action}"
            for permission in job.permissions
            for action in permission.actions
            if "*" in action
        }
        | {
            f"Resource::{resource}"
            for permission in job.permissions
            for resource in permission.resources
            if "*" in resource
        }
    )
    return [
        Acknowledgment(
            id=f"AwsSolutions-IAM5[{finding}]",
            reason=f"Written in the spec for job {job.name} alone ($.phases.{job.phase}.jobs.{job.name}"
            ".permissions); the loader admits a wildcard only where it completes a name.",
        )
        for finding in findings
    ]
