"""Versions per deploy, rendered: every job function publishes a retained version with its own
asynchronous invocation settings, the starter learns the versions and deploys after every job
stack, the orchestrator may invoke the versions, and nothing a run in flight invokes (functions,
roles, versions, the layer) is deleted by a deploy."""

from __future__ import annotations

import fnmatch
from dataclasses import replace
from typing import Any

from aws_cdk import NestedStack, Stack
from aws_cdk.assertions import Template

from constructs.workflow import function_name
from runtime.aws.versions import versioned_jobs
from runtime.definition.model import Job, Phase, Workflow, job_function_name
from tests.cdk_fixtures import catch_the_fish, resources_of_type, synthesize, templates_of

WORKFLOW = "catch_the_fish"


def workflow_templates(definition: Workflow) -> dict[str, dict[str, Any]]:
    _, built = synthesize([definition])
    return templates_of(Stack.of(built.workflows[definition.name]))


def of_type(templates: dict[str, dict[str, Any]], type_: str) -> dict[str, dict[str, Any]]:
    return {
        key: value
        for template in templates.values()
        for key, value in resources_of_type(template, type_).items()
    }


def function_ids(templates: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Function name -> its logical id."""
    return {
        resource["Properties"]["FunctionName"]: key
        for key, resource in of_type(templates, "AWS::Lambda::Function").items()
    }


def versions_by_job(templates: dict[str, dict[str, Any]], definition: Workflow) -> dict[str, str]:
    """Job -> the logical id of its function's version (a hash of its code and configuration)."""
    ids = {value: name for name, value in function_ids(templates).items()}
    found = {}
    for key, resource in of_type(templates, "AWS::Lambda::Version").items():
        name = ids[resource["Properties"]["FunctionName"]["Ref"]]
        found[name.removeprefix(f"{definition.name}-job-")] = key
    return found


def starter(templates: dict[str, dict[str, Any]]) -> dict[str, Any]:
    [resource] = [
        resource
        for resource in of_type(templates, "AWS::Lambda::Function").values()
        if resource["Properties"]["FunctionName"] == function_name(WORKFLOW, "starter")
    ]
    return resource


def test_every_job_function_publishes_a_retained_version_with_its_own_async_settings(
    fish_templates, fish_workflow
):
    versions = of_type(fish_templates, "AWS::Lambda::Version")
    configs = of_type(fish_templates, "AWS::Lambda::EventInvokeConfig")

    assert set(versions_by_job(fish_templates, fish_workflow)) == set(versioned_jobs(fish_workflow))
    for key, version in versions.items():
        assert (version["DeletionPolicy"], version["UpdateReplacePolicy"]) == ("Retain", "Retain"), key
        [config] = [
            config
            for config in configs.values()
            if config["Properties"]["Qualifier"] == {"Fn::GetAtt": [key, "Version"]}
        ]
        assert config["DeletionPolicy"] == "Retain", "an old version keeps its settings while runs invoke it"
        assert config["Properties"]["MaximumRetryAttempts"] == 0
        assert "Ref" in config["Properties"]["DestinationConfig"]["OnFailure"]["Destination"], (
            "the orchestrator"
        )


def test_a_deploy_that_changes_one_jobs_code_or_settings_publishes_a_version_of_that_job_only():
    base = catch_the_fish()
    changed = replace(
        base,
        phases=tuple(
            replace(
                phase,
                jobs=tuple(replace(job, memory=1024) if job.name == "clean" else job for job in phase.jobs),
            )
            for phase in base.phases
        ),
    )

    before = versions_by_job(workflow_templates(base), base)
    after = versions_by_job(workflow_templates(changed), changed)

    assert {job for job in before if before[job] != after[job]} == {"clean"}


def test_the_starter_learns_each_jobs_version_and_deploys_after_every_job_stack(
    fish_app, fish_templates, fish_workflow
):
    _, built = fish_app
    construct = built.workflows[WORKFLOW]
    parent = Stack.of(construct)
    resource = starter(fish_templates)

    joined = resource["Properties"]["Environment"]["Variables"]["JOB_VERSIONS"]["Fn::Join"]
    assert joined[0] == ","
    outputs = [part["Fn::GetAtt"][1] for part in joined[1]]
    assert len(outputs) == len(versioned_jobs(fish_workflow))
    for job, output in zip(versioned_jobs(fish_workflow), outputs, strict=True):
        assert job.replace("_", "") in output, (job, output)
    nested = {
        parent.get_logical_id(child.nested_stack_resource)  # type: ignore[arg-type]
        for child in construct.node.children
        if isinstance(child, NestedStack)
    }
    assert nested, "the job functions live in nested stacks"
    assert nested <= set(resource["DependsOn"])


def test_job_functions_and_their_roles_are_retained_when_a_job_leaves_the_spec(fish_templates, fish_workflow):
    functions = of_type(fish_templates, "AWS::Lambda::Function")
    roles = of_type(fish_templates, "AWS::IAM::Role")
    jobs = {job_function_name(WORKFLOW, job.name) for job in fish_workflow.jobs()}

    for key, function in functions.items():
        retained = function.get("DeletionPolicy") == "Retain"
        assert retained == (function["Properties"]["FunctionName"] in jobs), key
    job_roles = [
        role
        for role in roles.values()
        if role["Properties"].get("Description", "").startswith(("Job ", "The jobs without"))
    ]
    assert job_roles
    assert {role.get("DeletionPolicy") for role in job_roles} == {"Retain"}


def test_the_orchestrators_invoke_permission_covers_the_versions_it_invokes(fish_template):
    statements = [
        statement
        for policy in fish_template.find_resources("AWS::IAM::Policy").values()
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        if statement.get("Sid") == "InvokeOwnJobs"
    ]
    assert len(statements) == 2, "the orchestrator's and the reconciler's"
    for statement in statements:
        parts = statement["Resource"]["Fn::Join"][1]
        pattern = "".join(part if isinstance(part, str) else "x" for part in parts)
        qualified = pattern.replace(
            f"{job_function_name(WORKFLOW, '')}*", f"{job_function_name(WORKFLOW, 'clean')}:12"
        )
        assert fnmatch.fnmatchcase(qualified, pattern), (qualified, pattern)


def test_the_dependency_layer_is_retained_so_a_rolled_back_stack_finds_its_version():
    app, built = synthesize([catch_the_fish()])
    shared = Template.from_stack(built.shared)

    [layer] = shared.find_resources("AWS::Lambda::LayerVersion").values()
    assert (layer["DeletionPolicy"], layer["UpdateReplacePolicy"]) == ("Retain", "Retain")


def test_a_workflow_of_wait_jobs_only_gives_the_starter_an_empty_version_list():
    definition = Workflow(name="waits", phases=(Phase(name="p", jobs=(Job(name="nap", phase="p", wait=5),)),))

    [resource] = [
        resource
        for resource in of_type(workflow_templates(definition), "AWS::Lambda::Function").values()
        if resource["Properties"]["FunctionName"] == "waits-starter"
    ]

    assert resource["Properties"]["Environment"]["Variables"]["JOB_VERSIONS"] == ""


def test_a_deploy_that_changes_one_jobs_code_publishes_a_version_of_that_job_only(tmp_path):
    code = tmp_path / "clean.py"
    code.write_text("def handler(event, context):\n    return {'version': 1}\n")
    base = catch_the_fish()
    with_code = replace(
        base,
        phases=tuple(
            replace(
                phase,
                jobs=tuple(
                    replace(job, code=str(code)) if job.name == "clean" else job for job in phase.jobs
                ),
            )
            for phase in base.phases
        ),
    )

    before = versions_by_job(workflow_templates(with_code), with_code)
    code.write_text("def handler(event, context):\n    return {'version': 2}\n")
    after = versions_by_job(workflow_templates(with_code), with_code)

    assert {job for job in before if before[job] != after[job]} == {"clean"}
