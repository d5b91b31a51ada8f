"""What a job's spec grants its role (``permissions``), and why cdk-nag may let its wildcards be."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Validations
from aws_cdk import aws_iam as iam

from runtime.definition.model import Job


def grant_spec_permissions(role: iam.Role, job: Job) -> None:
    """The job's ``permissions`` as statements of its own role, with cdk-nag's wildcard findings
    acknowledged for exactly the wildcards the spec wrote."""
    for permission in job.permissions:
        role.add_to_policy(
            iam.PolicyStatement(actions=list(permission.actions), resources=list(permission.resources))
        )
    Validations.of(role).acknowledge(*spec_wildcards(job))


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
