"""A job function's environment, measured as Lambda measures it before CloudFormation sees it.

Lambda refuses a function whose environment variables, keys and values, are over 4 KB, and only
when the stack deploys (the nested job stack fails and rolls back). The loader keeps a spec's
``env`` within ``limits.JOB_ENV_MAX_BYTES``; here the whole environment a job function gets (the
spec's ``env`` and what the deploy adds) is measured at synth, so a deploy whose own part is
larger than the loader allowed for (long database or collection names) fails as a spec problem
naming the job, not in CloudFormation.
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Token

from runtime import limits
from runtime.definition import model
from runtime.errors import Problem

UNRESOLVED_VALUE_BYTES = 160
"""A value CloudFormation resolves at deploy time (the connection secret's ARN, read from the
shared stack) counts as this many bytes: a Secrets Manager ARN whose name is up to about 90
characters; the secret the app creates is named about 35."""


def value_bytes(value: str) -> int:
    return UNRESOLVED_VALUE_BYTES if Token.is_unresolved(value) else len(value.encode())


def environment_bytes(environment: Mapping[str, str]) -> int:
    """``limits.environment_bytes`` with each unresolved value counted at its allowance."""
    return sum(len(key.encode()) + value_bytes(value) for key, value in environment.items())


def environment_problems(
    workflow: model.Workflow, environments: Mapping[str, Mapping[str, str]]
) -> list[Problem]:
    """One problem per job (name -> its function's whole environment) over Lambda's limit."""
    problems = []
    for job in workflow.jobs():
        environment = environments.get(job.name)
        if environment is None:
            continue
        size = environment_bytes(environment)
        if size <= limits.LAMBDA_ENVIRONMENT_BYTES:
            continue
        deployed = environment_bytes({key: value for key, value in environment.items() if key not in job.env})
        problems.append(
            Problem(
                workflow.source or workflow.name,
                f"$.phases.{job.phase}.jobs.{job.name}.env",
                f"job {job.name!r}: its function's environment would be {size:,} bytes (keys and values: "
                f"{size - deployed:,} of env, {deployed:,} the deploy adds), over Lambda's "
                f"{limits.LAMBDA_ENVIRONMENT_BYTES:,}; shorten env, or the store's database and "
                "collection names",
            )
        )
    return problems
