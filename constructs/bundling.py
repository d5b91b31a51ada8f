"""Dependencies built without Docker: the pymongo layer every function shares, and the packages
a job folder's ``requirements.txt`` names, installed into that job's asset.

``PythonFunction`` and the default ``BundlingOptions`` run pip inside a Docker image; this machine
(and many CI runners) have no Docker. pip itself can fetch wheels for another platform and Python
version (``--platform`` / ``--python-version`` / ``--only-binary=:all:``), which is all a layer of
binary wheels needs, so bundling runs pip locally and the Docker image is never pulled.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsii
from aws_cdk import AssetHashType, BundlingOptions, DockerImage, ILocalBundling, RemovalPolicy, Stage
from aws_cdk import aws_lambda as lambda_

from constructs import Construct
from constructs.lambda_runtime import ARCHITECTURE, PYTHON_RUNTIME, RUNTIME_PACKAGE, python_version

NEWEST_GLIBC_MINOR = 28
"""Wheels built for glibc 2.28 and older: ``manylinux_2_28``, which Lambda's Python runtime runs
(Amazon Linux 2023, glibc 2.34). numpy and its kind publish no ``manylinux2014`` (glibc 2.17)
wheel for the newest Pythons any more."""

WHEEL_PLATFORMS = (
    *(f"manylinux_2_{minor}_x86_64" for minor in range(NEWEST_GLIBC_MINOR, 4, -1)),
    "manylinux2014_x86_64",
)
"""The ``--platform`` tags pip may choose wheels for on Lambda's x86_64 (``ARCHITECTURE``), newest
first: every PEP 600 tag from ``manylinux_2_28`` down to ``manylinux_2_5``, and the legacy
``manylinux2014`` (pip adds ``manylinux2010`` and ``manylinux1`` after it), since a tag given to
pip stands for itself alone."""

WHEEL_PLATFORM = WHEEL_PLATFORMS[0]
"""The platform the wheels are chosen for, named by its newest tag (``manylinux_2_28_x86_64``):
what messages and the layer's source hash say."""

RUNTIME_REQUIREMENTS = RUNTIME_PACKAGE / "requirements.txt"
"""What the handlers need beyond the Lambda runtime (pymongo; boto3 and jmespath come with it)."""

_UNINSTALLABLE = (
    re.compile(r"No matching distribution found for (\S+)"),
    re.compile(r"Could not find a version that satisfies the requirement (\S+)"),
)


def pip_install_command(requirements: Path, target_python: str, target: Path) -> list[str]:
    """pip, with the interpreter running this app, choosing wheels for Lambda, not this machine."""
    return [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-compile",
        *(argument for platform in WHEEL_PLATFORMS for argument in ("--platform", platform)),
        "--implementation",
        "cp",
        "--python-version",
        target_python,
        "--only-binary=:all:",
        "--target",
        str(target),
        "-r",
        str(requirements),
    ]


class RequirementsError(Exception):
    """pip could not install a requirements file for the Lambda platform; ``requirement`` is the
    package it named (or ``None`` when its message named none) and ``detail`` what it said."""

    def __init__(self, requirement: str | None, detail: str) -> None:
        self.requirement = requirement
        self.detail = detail
        super().__init__(detail)


def install_requirements(requirements: Path, target_python: str, cache: Path) -> Path:
    """Installs ``requirements`` for Lambda into ``<cache>/<hash>`` and returns that folder.

    The hash covers the file's text, the Python version and the platform, so a synth with an
    unchanged file finds the folder and runs no pip. pip writes into a temporary sibling that is
    renamed when complete: an interrupted install is never mistaken for a finished one.
    """
    text = requirements.read_text(encoding="utf-8")
    digest = hashlib.sha256(f"{target_python}\n{WHEEL_PLATFORM}\n{text}".encode()).hexdigest()[:32]
    installed = cache / digest
    if installed.is_dir():
        return installed
    cache.mkdir(parents=True, exist_ok=True)
    partial = cache / f"{digest}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    completed = subprocess.run(
        pip_install_command(requirements, target_python, partial), capture_output=True, text=True, check=False
    )
    if completed.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        output = completed.stderr.strip() or completed.stdout.strip()
        named = (match.group(1) for pattern in _UNINSTALLABLE if (match := pattern.search(output)))
        last_error = [line for line in output.splitlines() if line.startswith("ERROR:")][-1:]
        raise RequirementsError(next(named, None), (last_error or [output])[0].removeprefix("ERROR: "))
    try:
        partial.rename(installed)
    except OSError:  # another synth finished the same install first: keep theirs
        shutil.rmtree(partial, ignore_errors=True)
    return installed


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
        """The pip invocation, into the layer's ``python`` folder."""
        return pip_install_command(self._requirements, self._target_python, Path(output_dir) / "python")

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
    requirements: Path = RUNTIME_REQUIREMENTS
    """The requirements file to install; default ``RUNTIME_REQUIREMENTS``, what the handlers need."""
    also: tuple[Path, ...] = ()
    """More requirements files installed with it, resolved together into the one layer (e.g.
    ``constructs.tracing.TRACING_REQUIREMENTS``); default none."""
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
        staging = self._stage_requirements((props.requirements, *props.also), target_python)
        self._content_hash = hashlib.sha256((staging / "requirements.txt").read_bytes()).hexdigest()
        bundling = PipLayerBundling(staging / "requirements.txt", target_python)
        files = ", ".join(path.name for path in (props.requirements, *props.also))
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
            # A workflow stack whose update fails rolls its functions back onto the version before.
            removal_policy=RemovalPolicy.RETAIN,
            description=f"Run-time dependencies ({files}) for Python {target_python}",
        )

    @property
    def content_hash(self) -> str:
        """What the layer is built from (requirements, Python, platform), hashed: a new value
        means a new layer version."""
        return self._content_hash

    def _stage_requirements(self, requirements: tuple[Path, ...], target_python: str) -> Path:
        stage = Stage.of(self)
        if stage is None:
            raise ValueError(f"{self.node.path}: the layer asset needs an App or Stage above it")
        # The header is part of the source hash: another Python version or platform is another layer.
        text = f"# Python {target_python}, {WHEEL_PLATFORM}\n" + "".join(
            path.read_text(encoding="utf-8").rstrip("\n") + "\n" for path in requirements
        )
        # A folder per content: layers of other requirements in the same app do not share one.
        folder = hashlib.sha256(text.encode()).hexdigest()[:16]
        staging = Path(stage.outdir) / "staging" / "dependency-layer" / folder
        staging.mkdir(parents=True, exist_ok=True)
        (staging / "requirements.txt").write_text(text, encoding="utf-8")
        return staging
