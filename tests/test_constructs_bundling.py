"""The Docker-free dependency layer: one pip run per requirements set, cached in the assembly."""

from __future__ import annotations

from pathlib import Path

import pytest
from aws_cdk import App, DockerImage, Stack
from aws_cdk.assertions import Template

from constructs.bundling import WHEEL_PLATFORM, DependencyLayer, DependencyLayerProps, PipLayerBundling
from constructs.lambda_runtime import PYTHON_RUNTIME, RUNTIME_PACKAGE, python_version
from tests.cdk_fixtures import cdk_json_context, logical_id, make_app, staged_code

REQUIREMENTS = RUNTIME_PACKAGE / "requirements.txt"


def layer_asset_hash(**context: object) -> str:
    stack = Stack(make_app(**context), "Shared")
    layer = DependencyLayer(stack, "Dependencies", DependencyLayerProps(requirements=REQUIREMENTS))
    content = Template.from_stack(stack).to_json()["Resources"][logical_id(layer.layer)]
    return str(content["Properties"]["Content"]["S3Key"])


def test_layer_targets_the_functions_runtime_and_architecture():
    stack = Stack(make_app(), "Shared")
    DependencyLayer(stack, "Dependencies", DependencyLayerProps(requirements=REQUIREMENTS))

    Template.from_stack(stack).has_resource_properties(
        "AWS::Lambda::LayerVersion",
        {"CompatibleRuntimes": ["python3.14"], "CompatibleArchitectures": ["x86_64"]},
    )


def test_same_requirements_same_asset_hash_across_apps():
    assert layer_asset_hash() == layer_asset_hash()


def test_pip_command_targets_lambda_not_this_machine(tmp_path):
    command = PipLayerBundling(REQUIREMENTS, "3.14").command(str(tmp_path))

    assert command[command.index("--platform") + 1] == WHEEL_PLATFORM == "manylinux_2_28_x86_64"
    platforms = [command[index + 1] for index, argument in enumerate(command) if argument == "--platform"]
    assert platforms[-1] == "manylinux2014_x86_64"
    assert {"manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux_2_5_x86_64"} <= set(platforms)
    assert command[command.index("--python-version") + 1] == "3.14"
    assert "--only-binary=:all:" in command
    assert command[command.index("--target") + 1] == str(tmp_path / "python")
    assert python_version(PYTHON_RUNTIME) == "3.14"


@pytest.mark.synth
def test_local_bundling_installs_manylinux_wheels_with_real_pip(tmp_path):
    bundled = PipLayerBundling(REQUIREMENTS, python_version(PYTHON_RUNTIME)).try_bundle(
        str(tmp_path), image=DockerImage.from_registry("local-bundling-only")
    )

    assert bundled is True
    extensions = [path.name for path in (tmp_path / "python" / "bson").glob("*.so")]
    assert extensions
    assert all("cpython-314-x86_64-linux-gnu" in name for name in extensions)


@pytest.mark.synth
def test_local_bundling_failure_says_what_pip_said(tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("pymongo==0.0.0-no-such-version\n")

    with pytest.raises(RuntimeError, match=r"pip could not build the dependency layer .* for Python 3\.14"):
        PipLayerBundling(requirements, "3.14").try_bundle(
            str(tmp_path / "out"), image=DockerImage.from_registry("local-bundling-only")
        )


@pytest.mark.synth
def test_second_synth_reuses_the_bundle_in_the_assembly(tmp_path, monkeypatch):
    """With the same outdir, the second synth finds the asset in ``cdk.out`` and runs no pip."""

    def synth_layer() -> Path:
        app = App(outdir=str(tmp_path / "cdk.out"), context=cdk_json_context())
        stack = Stack(app, "Shared")
        layer = DependencyLayer(stack, "Dependencies", DependencyLayerProps(requirements=REQUIREMENTS))
        app.synth()
        return staged_code(layer.layer)

    first = synth_layer()

    def bundle_again(*_args: object, **_kwargs: object) -> bool:
        raise AssertionError("bundled again although cdk.out holds the layer")

    monkeypatch.setattr(PipLayerBundling, "try_bundle", bundle_again)
    second = synth_layer()

    assert first == second
    assert (second / "python" / "pymongo").is_dir()
