"""The pymongo dependency layer, built without Docker.

``PythonFunction`` and the default ``BundlingOptions`` run pip inside a Docker image; this machine
(and many CI runners) have no Docker. pip itself can fetch wheels for another platform and Python
version (``--platform`` / ``--python-version`` / ``--only-binary=:all:``), which is all a layer of
binary wheels needs, so bundling runs pip locally and the Docker image is never pulled.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsii
from aws_cdk import AssetHashType, BundlingOptions, DockerImage, ILocalBundling, Stage
from aws_cdk import aws_lambda as lambda_

from constructs import Construct
from constructs.lambda_code import ARCHITECTURE, PYTHON_RUNTIME, python_version

WHEEL_PLATFORM = "manylinux2014_x86_64"
"""Wheels that run on Lambda's x86_64 Amazon Linux (``ARCHITECTURE``)."""

NEVER_PULLED_IMAGE = DockerImage.from_registry("local-bundling-only")
"""``BundlingOptions`` requires an image; local bundling always succeeds or raises, so it is never
pulled. The name says why if it ever shows up in an error."""


@jsii.implements(ILocalBundling)
class PipLayerBundling:
    """Installs a requirements file into ``<output>/python`` (the layer layout Lambda puts on
    ``sys.path``) with binary wheels for the Lambda platform."""

    def __init__(self, requirements: Path, target_python: str) -> None:
        self._requirements = requirements
        self._target_python = target_python

    def command(self, output_dir: str) -> list[str]:
        """The pip invocation, with the interpreter running this app."""
        return [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-compile",
            "--platform",
            WHEEL_PLATFORM,
            "--implementation",
            "cp",
            "--python-version",
            self._target_python,
            "--only-binary=:all:",
            "--target",
            str(Path(output_dir) / "python"),
            "-r",
            str(self._requirements),
        ]

    @jsii.member(jsii_name="tryBundle")
    def try_bundle(self, output_dir: str, *, image: DockerImage, **_options: Any) -> bool:
        """Returns ``True`` or raises: falling back to Docker would fail later and less clearly."""
        completed = subprocess.run(self.command(output_dir), capture_output=True, text=True, check=False)
        if completed.returncode != 0:
            raise RuntimeError(
                f"pip could not build the dependency layer from {self._requirements} for Python "
                f"{self._target_python} on {WHEEL_PLATFORM} (exit {completed.returncode}):\n"
                f"{completed.stderr.strip() or completed.stdout.strip()}"
            )
        return True


@dataclass(frozen=True, kw_only=True)
class DependencyLayerProps:
    requirements: Path
    """The requirements file to install (``runtime/requirements.txt``)."""
    runtime: lambda_.Runtime = PYTHON_RUNTIME
    """The Lambda runtime the wheels are chosen for; default ``PYTHON_RUNTIME``."""


class DependencyLayer(Construct):
    """One layer version holding the run-time dependencies every function of every workflow shares.

    The asset is hashed from a staging folder holding only the requirements file (with the target
    Python and platform written into it), so a second synth with the same requirements finds the
    bundle in ``cdk.out`` and skips pip.
    """

    def __init__(self, scope: Construct, construct_id: str, props: DependencyLayerProps) -> None:
        super().__init__(scope, construct_id)
        target_python = python_version(props.runtime)
        staging = self._stage_requirements(props.requirements, target_python)
        bundling = PipLayerBundling(staging / "requirements.txt", target_python)
        self.layer = lambda_.LayerVersion(
            self,
            "Layer",
            code=lambda_.Code.from_asset(
                str(staging),
                asset_hash_type=AssetHashType.SOURCE,
                bundling=BundlingOptions(image=NEVER_PULLED_IMAGE, local=bundling),
            ),
            compatible_runtimes=[props.runtime],
            compatible_architectures=[ARCHITECTURE],
            description=f"Run-time dependencies ({props.requirements.name}) for Python {target_python}",
        )

    def _stage_requirements(self, requirements: Path, target_python: str) -> Path:
        stage = Stage.of(self)
        if stage is None:
            raise ValueError(f"{self.node.path}: the layer asset needs an App or Stage above it")
        staging = Path(stage.outdir) / "staging" / "dependency-layer" / target_python
        staging.mkdir(parents=True, exist_ok=True)
        # The header is part of the source hash: another Python version or platform is another layer.
        (staging / "requirements.txt").write_text(
            f"# Python {target_python}, {WHEEL_PLATFORM}\n" + requirements.read_text(encoding="utf-8"),
            encoding="utf-8",
        )
        return staging
