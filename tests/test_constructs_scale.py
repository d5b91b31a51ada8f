"""What passes synth must deploy, at any width: a job function's environment within Lambda's
4 KB, and IAM roles that grow with the jobs that declare ``permissions``, not with the jobs."""

from __future__ import annotations

import time
from typing import Any

import pytest
from aws_cdk import Stack

from cdk_app.config import AppConfig
from constructs.job_environment import UNRESOLVED_VALUE_BYTES
from runtime import limits
from runtime.definition.model import Permission
from runtime.errors import SpecError
from runtime.store.settings import StoreSettings
from tests.cdk_fixtures import (
    catch_the_fish,
    generated_workflow,
    resources_of_type,
    synthesize,
    templates_of,
    with_job_changes,
)

BUCKET = Permission(actions=("s3:GetObject",), resources=("arn:aws:s3:::catches-example/landing/*",))


def job_environments(workflow_stack: Stack) -> dict[str, dict[str, Any]]:
    """Job function name -> its synthesized ``Environment.Variables``."""
    return {
        function["Properties"]["FunctionName"]: function["Properties"]["Environment"]["Variables"]
        for template in templates_of(workflow_stack).values()
        for function in resources_of_type(template, "AWS::Lambda::Function").values()
        if "-job-" in function["Properties"]["FunctionName"]
    }


def roles(workflow_stack: Stack) -> int:
    return sum(len(resources_of_type(t, "AWS::IAM::Role")) for t in templates_of(workflow_stack).values())


def test_a_job_environment_over_4_kb_fails_synth_naming_the_job_and_the_size():
    """The loader refuses such a spec; a workflow built in code is measured again at synth."""
    workflow = with_job_changes(catch_the_fish(), catch_fish={"env": {"TACKLE": "x" * 5000}})

    with pytest.raises(SpecError) as raised:
        synthesize([workflow])

    (problem,) = raised.value.problems
    assert problem.path == "$.phases.thinking.jobs.catch_fish.env"
    assert "job 'catch_fish': its function's environment would be 5," in problem.message
    assert "over Lambda's 4,096" in problem.message


def test_what_the_deploy_adds_fits_what_the_loader_leaves_for_it(fish_app, fish_workflow):
    """The loader lets ``env`` take ``JOB_ENV_MAX_BYTES``: the rest must hold what the deploy adds,
    a value CloudFormation resolves (the secret's ARN) counted at its allowance."""
    _, built = fish_app
    environments = job_environments(Stack.of(built.workflows["catch_the_fish"]))
    envs = {job.name: job.env for job in fish_workflow.jobs()}

    added = {
        name: sum(
            len(key) + (len(value) if isinstance(value, str) else UNRESOLVED_VALUE_BYTES)
            for key, value in variables.items()
            if key not in envs[name.removeprefix("catch_the_fish-job-")]
        )
        for name, variables in environments.items()
    }

    assert len(added) == 9
    assert "JOB_HANDLER" in environments["catch_the_fish-job-catch_fish"]
    assert max(added.values()) <= limits.DEPLOYED_ENVIRONMENT_BYTES


def test_a_job_environment_the_loader_allows_synthesizes():
    largest = {"TACKLE": "x" * (limits.JOB_ENV_MAX_BYTES - len("TACKLE"))}
    workflow = with_job_changes(catch_the_fish(), catch_fish={"env": largest})

    _, built = synthesize([workflow])

    environments = job_environments(Stack.of(built.workflows["catch_the_fish"]))
    assert environments["catch_the_fish-job-catch_fish"]["TACKLE"] == largest["TACKLE"]


def test_long_store_names_leave_less_room_and_synth_says_whose_environment_is_over():
    largest = {"TACKLE": "x" * (limits.JOB_ENV_MAX_BYTES - len("TACKLE"))}
    workflow = with_job_changes(catch_the_fish(), catch_fish={"env": largest})
    store = StoreSettings(database="d" * 60, runs_collection="r" * 200, statuses_collection="s" * 200)

    with pytest.raises(SpecError) as raised:
        synthesize([workflow], AppConfig(store=store))

    assert [problem.path for problem in raised.value.problems] == ["$.phases.thinking.jobs.catch_fish.env"]


def test_roles_grow_with_the_jobs_that_declare_permissions_not_with_the_jobs():
    base = generated_workflow("few", 3, phases=1)
    _, plain = synthesize([base])
    _, granted = synthesize([with_job_changes(base, job_00_001={"permissions": (BUCKET,)})])

    assert roles(Stack.of(granted.workflows["few"])) == roles(Stack.of(plain.workflows["few"])) + 1


def test_a_300_job_workflow_without_permissions_has_as_many_roles_as_a_3_job_one():
    """The account's default quota is 1,000 roles: one per job let six 150-job workflows use it up."""
    _, small = synthesize([generated_workflow("small", 3, phases=1)])
    started = time.monotonic()
    _, large = synthesize([generated_workflow("large", 300, phases=10)])
    large_stack = Stack.of(large.workflows["large"])
    large_roles = roles(large_stack)  # renders every template: the synth's own cost
    elapsed = time.monotonic() - started

    assert len(large.workflows["large"].job_functions) == 300
    assert large_roles == roles(Stack.of(small.workflows["small"]))
    print(f"synthesized 300 jobs in {elapsed:.1f} s: {large_roles} roles")
