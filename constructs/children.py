"""What a workflow whose jobs run child workflows needs in the cloud: its orchestrator and its
reconciler start a child by invoking the child workflow's starter function (``runtime.aws.children``),
so they may invoke the starters of the workflows its spec calls, by name, and no other."""

from __future__ import annotations

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_

from runtime.aws.children import starter_function_name
from runtime.definition.model import Workflow


def child_workflows(workflow: Workflow) -> list[str]:
    """The workflows ``workflow``'s jobs run as children, each once, sorted."""
    return sorted({job.child_workflow.name for job in workflow.jobs() if job.child_workflow is not None})


def may_start_children(function: lambda_.Function, workflow: Workflow) -> None:
    """``function`` may invoke the starter of each child workflow of ``workflow`` (none: nothing)."""
    children = child_workflows(workflow)
    if not children:
        return
    stack = Stack.of(function)
    function.add_to_role_policy(
        iam.PolicyStatement(
            sid="StartChildRuns",
            actions=["lambda:InvokeFunction"],
            resources=[
                stack.format_arn(
                    service="lambda",
                    resource="function",
                    resource_name=starter_function_name(child),
                    arn_format=ArnFormat.COLON_RESOURCE_NAME,
                )
                for child in children
            ],
        )
    )
