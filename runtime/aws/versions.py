"""The version map of a deploy in the cloud: the starter's ``JOB_VERSIONS`` (the version number
each job function published) made into qualified ARNs, beside the starter's own ARN."""

from __future__ import annotations

from runtime.definition.model import Workflow, job_function_name
from runtime.documents.deployment import Deployment, deployment_of


class VersionsError(ValueError):
    """``JOB_VERSIONS`` does not match the bundled definition: a broken deploy, never a request."""


def versioned_jobs(definition: Workflow) -> list[str]:
    """The jobs with a function, in the order ``JOB_VERSIONS`` lists their versions."""
    return [job.name for job in definition.jobs() if job.runs_code]


def function_arn_prefix(function_arn: str) -> str:
    """``arn:<partition>:lambda:<region>:<account>:function:`` of a function's own ARN."""
    head, marker, _ = function_arn.partition(":function:")
    if not marker or not head.startswith("arn:"):
        raise VersionsError(f"not a Lambda function ARN: {function_arn!r}")
    return head + marker


def cloud_deployment(definition: Workflow, versions: str, starter_arn: str) -> Deployment:
    """The run's version map: each job -> ``<its function's ARN>:<version>``."""
    numbers = [number.strip() for number in versions.split(",")] if versions.strip() else []
    jobs = versioned_jobs(definition)
    if len(numbers) != len(jobs) or not all(number.isdigit() for number in numbers):
        raise VersionsError(
            f"JOB_VERSIONS must list {len(jobs)} version numbers, one per job with a function "
            f"({', '.join(jobs)}), got {versions!r}"
        )
    prefix = function_arn_prefix(starter_arn)
    functions = {
        job: f"{prefix}{job_function_name(definition.name, job)}:{number}"
        for job, number in zip(jobs, numbers, strict=True)
    }
    return deployment_of(definition.to_document(), functions)
