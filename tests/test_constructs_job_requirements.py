"""A job folder's requirements.txt, installed into that job's asset for Lambda's platform with pip
(no Docker), once per distinct file; a package pip cannot install is a spec problem that names the
job and the package. Uses PyPI (``six``, a small pure-Python wheel); cached under ``.build/``."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from aws_cdk import App

from cdk_app.app import WorkflowApp, build, synth
from cdk_app.config import AppConfig
from constructs import bundling
from runtime.definition.model import Job, Phase, Workflow
from runtime.errors import SpecError
from tests.cdk_fixtures import NO_BUNDLING, REPO, cdk_json_context, make_app, staged_code

pytestmark = pytest.mark.synth

ASSEMBLY = REPO / ".build" / "test-job-requirements"
"""A fixed assembly folder, so the installed packages are reused by later test runs."""


def job_folder(root: Path, name: str, requirements: str | None) -> Path:
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "handler.py").write_text(
        "import six\n\ndef handler(event, context):\n    return {'six': six.__version__}\n"
    )
    if requirements is not None:
        (folder / "requirements.txt").write_text(requirements)
    return folder


def workflow_with(jobs: dict[str, Path | None]) -> Workflow:
    return Workflow(
        name="deps",
        source="/specs/deps.yaml",
        phases=(
            Phase(
                name="only",
                jobs=tuple(
                    Job(name=name, phase="only", code=None if code is None else str(code))
                    for name, code in jobs.items()
                ),
            ),
        ),
    )


def synthesize_into(outdir: Path, workflow: Workflow) -> WorkflowApp:
    app = App(outdir=str(outdir), context=cdk_json_context() | NO_BUNDLING)
    return build(app, AppConfig(), [workflow])


@pytest.fixture(scope="module")
def code_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("job_code")


def test_a_job_folders_requirements_are_installed_into_that_jobs_asset_only(code_root):
    workflow = workflow_with(
        {
            "with_six": job_folder(code_root, "with_six", "six==1.16.0\n"),
            "plain": job_folder(code_root, "plain", None),
            "stub": None,
        }
    )

    built = synthesize_into(ASSEMBLY, workflow).workflows["deps"]

    with_six = staged_code(built.job_function("with_six"))
    assert (with_six / "six.py").is_file()
    assert (with_six / "six-1.16.0.dist-info").is_dir()
    assert (with_six / "handler.py").is_file()
    assert not (with_six / "requirements.txt").exists()
    assert not (staged_code(built.job_function("plain")) / "six.py").exists()
    assert not (staged_code(built.job_function("stub")) / "six.py").exists()


def test_an_unchanged_requirements_file_is_not_installed_again(code_root, monkeypatch):
    workflow = workflow_with({"with_six": job_folder(code_root, "again", "six==1.16.0\n")})
    synthesize_into(ASSEMBLY, workflow)

    def no_pip(*args: object, **kwargs: object) -> subprocess.CompletedProcess[str]:
        raise AssertionError("pip ran although the requirements did not change")

    monkeypatch.setattr(bundling.subprocess, "run", no_pip)
    built = synthesize_into(ASSEMBLY, workflow).workflows["deps"]

    assert (staged_code(built.job_function("with_six")) / "six.py").is_file()


def test_a_package_pip_cannot_install_names_the_job_and_the_package(code_root, tmp_path):
    bad = job_folder(code_root, "bad", "six==1.16.0\nno-such-package-for-lambda-xyz==9.9.9\n")
    also_bad = job_folder(code_root, "also_bad", "six==0.0.1\n")
    workflow = workflow_with({"extract": bad, "load": also_bad})

    with pytest.raises(SpecError) as raised:
        synthesize_into(tmp_path / "cdk.out", workflow)

    extract, load = (str(problem) for problem in raised.value.problems)
    assert extract.startswith(f"/specs/deps.yaml: $.phases.only.jobs.extract.code: {bad}/requirements.txt: ")
    assert "job 'extract' needs 'no-such-package-for-lambda-xyz==9.9.9', which pip cannot install" in extract
    assert "for Python 3.14 on manylinux_2_28_x86_64" in extract
    assert "job 'load' needs 'six==0.0.1'" in load


def test_cdk_synth_prints_the_problem_without_a_traceback(tmp_path, capsys):
    specs = tmp_path / "specs"
    job_folder(specs / "jobs", "extract", "no-such-package-for-lambda-xyz==9.9.9\n")
    (specs / "deps.yaml").write_text(
        "workflow: deps\nphases:\n  only:\n    jobs:\n      extract: {code: jobs/extract}\n"
    )

    with pytest.raises(SystemExit) as exit_info:
        synth(make_app(workflowsDir=str(specs)))

    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "$.phases.only.jobs.extract.code" in err
    assert "'no-such-package-for-lambda-xyz==9.9.9'" in err
    assert "Traceback" not in err


def test_a_job_with_numpy_in_its_requirements_synthesizes(code_root):
    """numpy publishes no manylinux2014 wheel for Python 3.14, only manylinux_2_28, which Lambda's
    runtime runs. Downloads one wheel from PyPI once; kept in the assembly's cache afterwards."""
    folder = code_root / "with_numpy"
    folder.mkdir()
    (folder / "handler.py").write_text(
        "import numpy\n\ndef handler(event, context):\n    return {'sum': int(numpy.arange(4).sum())}\n"
    )
    (folder / "requirements.txt").write_text("numpy==2.5.5\n")

    built = synthesize_into(ASSEMBLY, workflow_with({"arrays": folder})).workflows["deps"]

    asset = staged_code(built.job_function("arrays"))
    extensions = [path.name for path in (asset / "numpy" / "_core").glob("_multiarray_umath*.so")]
    assert extensions == ["_multiarray_umath.cpython-314-x86_64-linux-gnu.so"]
