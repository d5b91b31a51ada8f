"""What every function of ours runs: one Python runtime, one architecture, and code assets staged
from the ``runtime`` package (plus a job's own code or the starter's compiled definition).

Assets are staged into a folder of the cloud assembly and hashed by content, so an unchanged
workflow keeps its asset hashes and a changed job only changes that job's asset.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from aws_cdk import Stage

from constructs import Construct
from constructs.bundling import WHEEL_PLATFORM, RequirementsError, install_requirements
from constructs.lambda_runtime import PYTHON_RUNTIME, RUNTIME_PACKAGE, python_version
from runtime.definition.model import Job, Workflow
from runtime.errors import Problem, SpecError

DEFINITION_FILE = "workflow.json"
"""The starter's bundled ``Workflow.to_document()``, named by ``WORKFLOW_DEFINITION_FILE``."""

JOB_HANDLER_FUNCTION = "handler"
"""The function a job's module must define (docs/architecture.md, "Job API")."""

FOLDER_ENTRY_MODULE = "handler"
"""A job whose ``code`` is a folder runs its top-level ``handler.py`` (the loader checks it exists)."""

JOB_REQUIREMENTS_FILE = "requirements.txt"
"""In a job's code folder: packages installed next to its code, for that job alone."""

_BUILD_ONLY = shutil.ignore_patterns("__pycache__", "*.pyc", "requirements.txt")
_MODULE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class CodeStaging:
    """Writes the folders the code assets are made from, under ``<assembly>/staging/<workflow>``.

    One instance per workflow; folders are rebuilt on every synth so nothing stale is shipped.
    """

    def __init__(self, scope: Construct, workflow: Workflow) -> None:
        stage = Stage.of(scope)
        if stage is None:
            raise ValueError(f"{scope.node.path}: code assets need an App or Stage above the workflow")
        self._root = Path(stage.outdir) / "staging" / workflow.name
        shutil.rmtree(self._root, ignore_errors=True)
        # Kept across synths in the assembly folder: an unchanged requirements file installs once.
        self._requirements_cache = Path(stage.outdir) / "cache" / "job-requirements"
        self._workflow = workflow

    def runtime_only(self) -> Path:
        """The runtime package alone: orchestrator, notifier and stub jobs."""
        folder = self._root / "runtime"
        if not folder.exists():
            self._copy_runtime(folder)
        return folder

    def starter(self) -> Path:
        """The runtime package plus the compiled definition the starter snapshots into new runs."""
        folder = self._root / "starter"
        self._copy_runtime(folder)
        (folder / DEFINITION_FILE).write_text(
            json.dumps(self._workflow.to_document(), indent=1, sort_keys=True), encoding="utf-8"
        )
        return folder

    def job(self, job: Job) -> tuple[Path, str]:
        """The runtime package plus the job's own code; returns the folder and ``JOB_HANDLER``.

        A file ``fish.py`` becomes the module ``fish``; a folder's contents are copied to the top
        level and its ``handler.py`` is the entry module. The workflow's ``shared`` folder's
        contents are copied to the top level of every job's folder. A folder's ``requirements.txt`` is
        installed for Lambda into the top level too (Lambda puts it on ``sys.path``); raises
        ``RequirementsError`` when pip cannot.
        """
        if job.code is None:
            raise ValueError(f"job {job.name!r} has no code; stub jobs use runtime_only()")
        source = Path(job.code)
        folder = self._root / "jobs" / job.name
        self._copy_runtime(folder)
        if self._workflow.shared is not None:
            # The workflow's shared modules sit at the top level too (the loader refuses a job
            # module that has a shared module's name).
            shutil.copytree(self._workflow.shared, folder, dirs_exist_ok=True, ignore=_BUILD_ONLY)
        if source.is_file():
            module = source.stem
            shutil.copy2(source, folder / source.name)
        elif source.is_dir():
            module = FOLDER_ENTRY_MODULE
            if (source / RUNTIME_PACKAGE.name).exists():
                raise ValueError(f"job {job.name!r}: code folder {source} must not contain 'runtime'")
            shutil.copytree(source, folder, dirs_exist_ok=True, ignore=_BUILD_ONLY)
            if (source / JOB_REQUIREMENTS_FILE).is_file():
                installed = install_requirements(
                    source / JOB_REQUIREMENTS_FILE, python_version(PYTHON_RUNTIME), self._requirements_cache
                )
                shutil.copytree(installed, folder, dirs_exist_ok=True, symlinks=True)
        else:
            raise ValueError(f"job {job.name!r}: code {source} is neither a file nor a folder")
        if not _MODULE_NAME.match(module) or module == RUNTIME_PACKAGE.name:
            raise ValueError(
                f"job {job.name!r}: {source.name} cannot be imported as a module; "
                "name it like a Python identifier other than 'runtime'"
            )
        return folder, f"{module}.{JOB_HANDLER_FUNCTION}"

    def jobs(self) -> dict[str, tuple[str, str]]:
        """Job name -> (asset folder, ``JOB_HANDLER``) for jobs with code, staged before any
        resource exists so every job whose requirements cannot be installed is reported at once."""
        workflow = self._workflow
        staged: dict[str, tuple[str, str]] = {}
        problems: list[Problem] = []
        for job in workflow.jobs():
            if job.code is None:
                continue
            try:
                folder, entry = self.job(job)
            except RequirementsError as error:
                package = f"{error.requirement!r}" if error.requirement else "its packages"
                problems.append(
                    Problem(
                        workflow.source or workflow.name,
                        f"$.phases.{job.phase}.jobs.{job.name}.code",
                        f"{job.code}/{JOB_REQUIREMENTS_FILE}: job {job.name!r} needs {package}, which pip "
                        f"cannot install for Python {python_version(PYTHON_RUNTIME)} on {WHEEL_PLATFORM} "
                        f"({error.detail}); pin a version published as a wheel for that platform, "
                        "or remove it",
                    )
                )
                continue
            staged[job.name] = (str(folder), entry)
        if problems:
            raise SpecError(problems)
        return staged

    def _copy_runtime(self, folder: Path) -> None:
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(RUNTIME_PACKAGE, folder / RUNTIME_PACKAGE.name, ignore=_BUILD_ONLY)
