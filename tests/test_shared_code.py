"""Modules every job of a workflow shares: the spec's ``shared`` folder, importable by each job's
code under ``run``, under the dev server and in each job's synthesized asset (docs/spec.md)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymongo
import pytest
from aws_cdk import App

from cdk_app.app import build
from cdk_app.config import AppConfig
from cdk_app.local.dev import FolderDeployment
from cdk_app.local.jobs import context_for
from cdk_app.local.processes import JobProcesses
from cdk_app.local.snapshots import CodeSnapshots
from runtime.definition.loader import check_specs, load_workflow
from runtime.errors import SpecError
from runtime.store.settings import StoreSettings
from tests.cdk_fixtures import NO_BUNDLING, cdk_json_context, staged_code
from tests.cli_harness import cli

SPEC = """\
workflow: billing
shared: lib
phases:
  bill:
    jobs:
      price: {code: jobs/price.py}
      invoice: {code: jobs/invoice, after: [price]}
"""

MONEY = "def cents(amount):\n    return round(amount * 100)\n"
LABELS = "def label(number):\n    return f'#{number}'\n"
PRICE = """\
import money


def handler(event, context):
    return {"cents": money.cents(event["input"]["amount"])}
"""
INVOICE = """\
import money
from labels import label


def handler(event, context):
    return {"label": label(event["results"]["price"]["cents"]), "one": money.cents(0.01)}
"""


def project(root: Path, spec: str = SPEC) -> Path:
    """A spec folder whose two jobs, a file and a folder, import modules of its ``lib``."""
    (root / "lib" / "labels").mkdir(parents=True)
    (root / "lib" / "money.py").write_text(MONEY)
    (root / "lib" / "labels" / "__init__.py").write_text(LABELS)
    (root / "jobs" / "invoice").mkdir(parents=True)
    (root / "jobs" / "price.py").write_text(PRICE)
    (root / "jobs" / "invoice" / "handler.py").write_text(INVOICE)
    (root / "billing.yaml").write_text(spec)
    return root / "billing.yaml"


@pytest.fixture
def database(mongo_client: pymongo.MongoClient[dict]) -> Iterator[str]:
    name = f"shared_{uuid.uuid4().hex[:12]}"
    yield name
    mongo_client.drop_database(name)


def test_jobs_importing_shared_modules_run_under_run(tmp_path: Path, mongo_uri: str, database: str) -> None:
    spec = project(tmp_path)

    result = cli(
        "run", str(spec), "--json", "--mongo-uri", mongo_uri, "--database", database,
        "--input", json.dumps({"amount": 12.5}), "--timeout", "60",
    )  # fmt: skip

    assert result.exit_code == 0, result.stderr
    assert result.report["jobs"]["invoice"]["output"] == {"label": "#1250", "one": 1}


def test_jobs_importing_shared_modules_run_under_the_dev_server_from_the_runs_snapshot(
    tmp_path: Path,
) -> None:
    """The dev server runs a run's pinned snapshot of the job code: the shared modules are in it."""
    project(tmp_path)
    deployment = FolderDeployment(tmp_path, StoreSettings(), lambda line: None)
    deployment.refresh()
    snapshots = CodeSnapshots(tmp_path / "snapshots")
    function_name = snapshots.snapshot(deployment.workflows["billing"]).function_of("invoice")
    assert function_name is not None
    event: dict[str, Any] = {"input": {"amount": 2}, "results": {"price": {"cents": 200}}}
    (tmp_path / "lib" / "money.py").write_text("raise ImportError('an edit after the run was pinned')")
    job = snapshots.job(function_name, "invoice")
    assert job is not None

    with JobProcesses() as processes:
        handler = processes.handler("billing", job, snapshots.shared_folder(function_name))
        output = handler(event, context_for("billing", job, "request"))

    assert output == {"label": "#200", "one": 1}


def test_each_jobs_synthesized_asset_holds_the_shared_modules(tmp_path: Path) -> None:
    workflow = load_workflow(project(tmp_path / "specs"))
    app = App(outdir=str(tmp_path / "cdk.out"), context=cdk_json_context() | NO_BUNDLING)

    built = build(app, AppConfig(), [workflow]).workflows["billing"]

    for job, entry in (("price", "price.py"), ("invoice", "handler.py")):
        asset = staged_code(built.job_function(job))
        assert (asset / "money.py").read_text() == MONEY
        assert (asset / "labels" / "__init__.py").read_text() == LABELS
        assert (asset / entry).is_file()
        assert (asset / "runtime").is_dir()


def test_a_job_importing_a_shared_module_gets_no_warning(tmp_path: Path) -> None:
    check = check_specs([project(tmp_path)])

    assert check.problems == ()
    assert check.warnings == ()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda root: (root / "lib" / "money.py").rename(root / "money.py"), None),
        (
            lambda root: (root / "lib" / "runtime").mkdir(),
            "shared folder 'lib' contains 'runtime', which would hide the bundled runtime",
        ),
        (
            lambda root: (root / "lib" / "price.py").write_text(""),
            "'price' is both the job's module and a module of the shared folder 'lib': one would hide "
            "the other in the bundle",
        ),
        (
            lambda root: (root / "jobs" / "invoice" / "money.py").write_text(""),
            "code folder 'jobs/invoice' and the shared folder 'lib' both hold 'money': one would hide "
            "the other in the bundle",
        ),
    ],
    ids=["missing-module-warns", "runtime", "file-job-collides", "folder-job-collides"],
)
def test_a_shared_folder_that_would_break_a_bundle_is_refused(
    tmp_path: Path, change: Any, message: str | None
) -> None:
    spec = project(tmp_path)
    change(tmp_path)

    check = check_specs([spec])

    if message is None:
        assert check.problems == ()
        assert any("imports 'money'" in problem.message for problem in check.warnings)
    else:
        assert [problem.message for problem in check.problems] == [message]


def test_a_shared_folder_that_is_not_there_is_refused_with_its_path(tmp_path: Path) -> None:
    spec = project(tmp_path, SPEC.replace("shared: lib", "shared: libs"))

    with pytest.raises(SpecError) as raised:
        load_workflow(spec)

    (problem,) = raised.value.problems
    assert str(problem.path) == "$.shared"
    looked = (tmp_path / "libs").as_posix()
    assert (
        problem.message == f"shared folder 'libs' does not exist (looked for {looked}) (did you mean 'lib'?)"
    )
