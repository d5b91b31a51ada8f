"""``prune`` (docs/operating.md, "Versions and deploys"): old versions of job functions and the
retained functions of removed jobs are deleted once no running run invokes them, the newest are
kept, and a run starting while prune runs never loses its versions: the versions are listed
before the running runs' maps are read (the interleavings are forced below). The Lambda adapter
is checked against botocore's Stubber."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pymongo
import pytest
from botocore.stub import Stubber

from runtime.aws.lambda_versions import LambdaVersions, PruneError
from runtime.definition.model import Workflow, job_function_name
from runtime.documents.deployment import Deployment, deployment_of
from runtime.errors import RunError
from runtime.service.prune import prune_versions
from runtime.service.runs import start_run
from runtime.store.mongo import MongoStore
from runtime.store.settings import StoreSettings
from tests.cli_harness import cli
from tests.test_engine_decisions import spec

DEFINITION = spec({"p": {"a": {}, "b": {}}})
A, B, GONE = (job_function_name("w", job) for job in ("a", "b", "gone"))
ARN = "arn:aws:lambda:eu-west-1:123456789012:function:"


def pinned_to(versions: dict[str, int]) -> Deployment:
    functions = {job: f"{ARN}{job_function_name('w', job)}:{number}" for job, number in versions.items()}
    return deployment_of(DEFINITION.to_document(), functions)


class FakeVersions:
    """Lambda's versions, in memory; ``on_list`` runs while a function's versions are listed."""

    def __init__(
        self, versions: dict[str, list[int]], on_list: Callable[[str], object] | None = None
    ) -> None:
        self.listed = {name: list(numbers) for name, numbers in versions.items()}
        self.on_list = on_list
        self.deleted: list[tuple[str, int] | str] = []

    def function_names(self, prefix: str) -> list[str]:
        return sorted(name for name in self.listed if name.startswith(prefix))

    def versions(self, function: str) -> list[int]:
        numbers = list(self.listed[function])
        if self.on_list is not None:
            self.on_list(function)
        return numbers

    def delete_version(self, function: str, version: int) -> None:
        self.deleted.append((function, version))

    def delete_function(self, function: str) -> None:
        self.deleted.append(function)


class ReadThenStart:
    """The store, with a run starting right after prune has read the running runs' maps."""

    def __init__(self, store: MongoStore, start: Callable[[], object]) -> None:
        self.store = store
        self.start = start

    def running_deployments(self, workflow: str) -> list[Deployment]:
        found = self.store.running_deployments(workflow)
        self.start()
        return found


@pytest.fixture
def store(mongo_client: pymongo.MongoClient[dict], store_settings: StoreSettings) -> MongoStore:
    store = MongoStore(mongo_client, store_settings)
    store.ensure_indexes()
    return store


def test_old_versions_no_running_run_invokes_are_deleted_and_the_newest_kept(store: MongoStore) -> None:
    start_run(store, DEFINITION, run_id="old", deployment=pinned_to({"a": 2, "b": 1}))
    start_run(store, DEFINITION, run_id="ended", deployment=pinned_to({"a": 1, "b": 1}))
    store.runs.update_one({"_id": "ended"}, {"$set": {"status": "succeeded"}})
    lambda_ = FakeVersions({A: [1, 2, 3, 4, 5], B: [1, 2]})

    pruned = prune_versions(lambda_, store, DEFINITION, keep=2)

    assert pruned.versions == ((A, 1), (A, 3))
    assert pruned.kept_for_runs == ((A, 2),)
    assert lambda_.deleted == [(A, 1), (A, 3)]


def test_a_run_that_starts_while_the_versions_are_listed_keeps_its_versions(store: MongoStore) -> None:
    """The start records its map while prune lists: prune reads the maps after listing, so it sees it."""
    lambda_ = FakeVersions(
        {A: [1, 2, 3], B: [1, 2, 3]},
        on_list=lambda name: (
            start_run(store, DEFINITION, run_id="during", deployment=pinned_to({"a": 1, "b": 1}))
            if name == A
            else None
        ),
    )

    pruned = prune_versions(lambda_, store, DEFINITION, keep=1)

    assert (A, 1) not in lambda_.deleted
    assert (B, 1) not in lambda_.deleted
    assert set(pruned.kept_for_runs) == {(A, 1), (B, 1)}
    assert lambda_.deleted == [(A, 2), (B, 2)]


def test_a_run_that_starts_after_the_maps_were_read_runs_the_newest_versions_which_are_kept(
    store: MongoStore,
) -> None:
    """A start after the read was pinned by the current deploy: the newest version of each function."""
    lambda_ = FakeVersions({A: [1, 2, 3], B: [4, 5]})
    late = ReadThenStart(
        store, lambda: start_run(store, DEFINITION, run_id="after", deployment=pinned_to({"a": 3, "b": 5}))
    )

    prune_versions(lambda_, late, DEFINITION, keep=1)

    assert lambda_.deleted == [(A, 1), (A, 2), (B, 4)]
    run = store.read_run("after")
    assert run is not None
    assert run.deployment is not None
    assert set(run.deployment.functions.values()) == {f"{ARN}{A}:3", f"{ARN}{B}:5"}
    assert not {(A, 3), (B, 5)} & set(lambda_.deleted)


def test_a_removed_jobs_function_goes_once_no_running_run_invokes_it(store: MongoStore) -> None:
    with_gone = Workflow.from_document(spec({"p": {"a": {}, "b": {}, "gone": {}}}).to_document())
    lambda_ = FakeVersions({A: [1], B: [1], GONE: [1, 2, 3]})
    start_run(
        store,
        with_gone,
        run_id="uses-gone",
        deployment=deployment_of(
            with_gone.to_document(), {"a": f"{ARN}{A}:1", "b": f"{ARN}{B}:1", "gone": f"{ARN}{GONE}:2"}
        ),
    )

    while_running = prune_versions(lambda_, store, DEFINITION, keep=1)
    store.runs.update_one({"_id": "uses-gone"}, {"$set": {"status": "failed"}})
    after = prune_versions(lambda_, store, DEFINITION, keep=1, dry_run=True)

    assert while_running.functions == ()
    assert while_running.versions == ((GONE, 1), (GONE, 3)), "its versions no run invokes go"
    assert after.functions == (GONE,)
    assert lambda_.deleted == [(GONE, 1), (GONE, 3)], "a dry run deletes nothing"


def test_keeping_no_version_is_refused(store: MongoStore) -> None:
    with pytest.raises(RunError, match="--keep must be at least 1"):
        prune_versions(FakeVersions({}), store, DEFINITION, keep=0)


# -- the Lambda adapter ---------------------------------------------------------------------------


def lambda_client() -> Any:
    return boto3.client("lambda", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x")


def configuration(name: str, version: str = "$LATEST") -> dict[str, str]:
    return {"FunctionName": name, "Version": version}


def test_the_adapter_reads_every_page_and_deletes_by_qualifier() -> None:
    client = lambda_client()
    with Stubber(client) as stub:
        stub.add_response(
            "list_functions",
            {"Functions": [configuration(A), configuration("other-x")], "NextMarker": "m"},
            {},
        )
        stub.add_response("list_functions", {"Functions": [configuration(B)]}, {"Marker": "m"})
        stub.add_response(
            "list_versions_by_function",
            {"Versions": [configuration(A), configuration(A, "1")], "NextMarker": "n"},
            {"FunctionName": A},
        )
        stub.add_response(
            "list_versions_by_function",
            {"Versions": [configuration(A, "2")]},
            {"FunctionName": A, "Marker": "n"},
        )
        stub.add_response("delete_function", {}, {"FunctionName": A, "Qualifier": "1"})
        stub.add_response("delete_function", {}, {"FunctionName": GONE})
        versions = LambdaVersions(client)

        names = versions.function_names("w-job-")
        numbers = versions.versions(A)
        versions.delete_version(A, 1)
        versions.delete_function(GONE)
        stub.assert_no_pending_responses()

    assert names == [A, B]
    assert numbers == [1, 2]


def test_a_refused_deletion_is_a_prune_error_naming_it() -> None:
    client = lambda_client()
    with Stubber(client) as stub:
        stub.add_client_error("delete_function", "ResourceConflictException", "in use")
        with pytest.raises(PruneError, match=f"could not delete version 3 of {A}: .*in use"):
            LambdaVersions(client).delete_version(A, 3)


def test_the_prune_command_prints_what_it_would_delete(
    store: MongoStore,
    mongo_uri: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / "w.yaml").write_text("workflow: w\nphases:\n  p:\n    jobs:\n      a: {}\n      b: {}\n")
    client = lambda_client()
    monkeypatch.setattr("cdk_app.cli.prune.boto3.client", lambda *args, **kwargs: client)
    database = ("--mongo-uri", mongo_uri, "--database", store.settings.database)
    with Stubber(client) as stub:
        stub.add_response("list_functions", {"Functions": [configuration(A)]}, {})
        stub.add_response(
            "list_versions_by_function",
            {"Versions": [configuration(A, str(number)) for number in (1, 2, 3)]},
            {"FunctionName": A},
        )
        result = cli("prune", "w", "--keep", "2", "--dry-run", "--workflows", str(tmp_path), *database)
    refused = cli("prune", "w", "--keep", "0", "--workflows", str(tmp_path), *database)

    assert (result.exit_code, result.stdout) == (0, f"would delete {A}:1\n"), result.stderr
    assert refused.exit_code == 2
    assert "--keep must be at least 1" in refused.stderr
