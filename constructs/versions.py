"""Versions per deploy (docs/operating.md, "Versions and deploys"): each job function publishes a
version whenever its code or configuration changes, runs invoke the versions the starter
recorded when they started, and nothing a run in flight may invoke is deleted by a deploy."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from aws_cdk import CfnResource, Duration, Fn, RemovalPolicy
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations

from constructs import IConstruct
from runtime import contracts


def version_options(
    orchestrator: lambda_.IFunction, retry_attempts: int, max_event_age: Duration
) -> lambda_.VersionOptions:
    """What each published version of a job function is created with. Lambda keeps the
    asynchronous invocation settings per qualifier: those of the unqualified function apply to
    ``$LATEST`` only, so every version gets its own (no retries, the orchestrator as on-failure
    destination). Old versions are retained: a run that started on one still invokes it."""
    return lambda_.VersionOptions(
        removal_policy=RemovalPolicy.RETAIN,
        retry_attempts=retry_attempts,
        max_event_age=max_event_age,
        on_failure=destinations.LambdaDestination(orchestrator),
    )


def retain(*constructs: IConstruct) -> None:
    """Every CloudFormation resource under ``constructs`` survives its removal from the template
    (``DeletionPolicy`` and ``UpdateReplacePolicy`` ``Retain``)."""
    for construct in constructs:
        for child in construct.node.find_all():
            if isinstance(child, CfnResource):
                child.apply_removal_policy(RemovalPolicy.RETAIN)


def publish_versions(functions: Sequence[lambda_.Function]) -> list[lambda_.Version]:
    """Each function's ``current_version`` (its logical id is a hash of the function's code and
    configuration, so a deploy that changes either publishes a new one), retained with the
    asynchronous invocation settings that belong to it."""
    versions = []
    for function in functions:
        version = function.current_version
        retain(version)
        versions.append(version)
    return versions


def pin_runs_to_versions(
    starter: lambda_.Function, versions: Sequence[lambda_.Version], job_stacks: Iterable[IConstruct]
) -> None:
    """The starter records each run's version map from ``JOB_VERSIONS`` (the version numbers, in
    the order of the bundled definition's jobs with a function) and is updated only after every
    job stack: a run started during a deploy never names a function that does not exist yet."""
    numbers = [version.version for version in versions]
    # Fn::Join refuses an empty list: a workflow of wait and approval jobs has no function.
    starter.add_environment(contracts.JOB_VERSIONS, Fn.join(",", numbers) if numbers else "")
    for stack in job_stacks:
        starter.node.add_dependency(stack)
