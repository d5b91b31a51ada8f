"""``prune`` (docs/operating.md, "Versions and deploys"): old versions of job functions and the
retained functions of removed jobs are deleted once no running run invokes them, the newest are
kept, and a run starting while prune runs never loses its versions: the versions are listed
before the running runs' maps are read (the interleavings are forced below). The Lambda adapter
is checked against botocore's Stubber."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
import pymongo
import pytest
from botocore.stub import Stubber

from runtime.aws.lambda_versions import LambdaVersions, PruneError
from runtime.definition.model import RunConcurrency, Workflow, job_function_name
from runtime.documents.deployment import Deployment, deployment_of
from runtime.errors import RunError
from runtime.service.prune import prune_layers, prune_versions
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
        self.layers: dict[str, set[str]] = {}
        """Function -> the layer version ARNs its versions are configured with."""
        self.layer_listing: dict[str, list[int]] = {}

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

    def layer_references(self, function: str) -> set[str]:
        return set(self.layers.get(function, set()))

    def layer_versions(self, layer: str) -> list[int]:
        numbers = list(self.layer_listing[layer])
        if self.on_list is not None:
            self.on_list(layer)
        return numbers

    def delete_layer_version(self, layer: str, version: int) -> None:
        self.deleted.append((f"layer {layer}", version))


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


def test_a_queued_run_keeps_the_versions_it_was_pinned_to(store: MongoStore) -> None:
    limited = replace(DEFINITION, concurrency=RunConcurrency(limit=1))
    start_run(store, limited, run_id="running", deployment=pinned_to({"a": 3, "b": 2}))
    start_run(store, limited, run_id="queued", deployment=pinned_to({"a": 1, "b": 1}))
    assert store.load_run("queued")["status"] == "queued"  # type: ignore[index]
    lambda_ = FakeVersions({A: [1, 2, 3, 4, 5], B: [1, 2]})

    pruned = prune_versions(lambda_, store, limited, keep=2)

    assert lambda_.deleted == [(A, 2)]
    assert pruned.kept_for_runs == ((A, 1), (A, 3))


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
    monkeypatch.setattr("boto3.client", lambda *args, **kwargs: client)
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


# -- the dependency layer --------------------------------------------------------------------------

LAYER = "arn:aws:lambda:eu-west-1:123456789012:layer:Dependencies"


def test_layer_versions_no_function_version_uses_are_deleted_keeping_the_newest() -> None:
    functions = FakeVersions({A: [1, 2], B: [1], "other-orchestrator": [4]})
    functions.layers = {A: {f"{LAYER}:5"}, B: {f"{LAYER}:2"}, "other-orchestrator": {f"{LAYER}:3"}}
    functions.layer_listing = {"Dependencies": [1, 2, 3, 4, 5]}

    pruned = prune_layers(functions, DEFINITION, keep=1)

    # 2 and 3 are in use (one by another workflow's function); 5 is the newest
    assert pruned.versions == (("Dependencies", 1), ("Dependencies", 4))
    assert pruned.kept_in_use == (("Dependencies", 2), ("Dependencies", 3))
    assert functions.deleted == [("layer Dependencies", 1), ("layer Dependencies", 4)]


def test_a_function_moved_to_another_layer_version_while_it_is_listed_keeps_both() -> None:
    """Listed first, references read after: a deploy moving A from 2 to 3 meanwhile (its version
    on 2 retained) leaves both in use."""

    def deploy(listing: str) -> None:
        functions.layers[A] = {f"{LAYER}:2", f"{LAYER}:3"}

    functions = FakeVersions({A: [1, 2]}, on_list=deploy)
    functions.layers = {A: {f"{LAYER}:2"}}
    functions.layer_listing = {"Dependencies": [1, 2, 3]}

    pruned = prune_layers(functions, DEFINITION, keep=1, dry_run=True)

    assert pruned.versions == (("Dependencies", 1),)
    assert functions.deleted == []


def test_the_adapter_reads_layer_references_and_versions_page_by_page() -> None:
    client = lambda_client()
    with Stubber(client) as stub:
        stub.add_response(
            "list_versions_by_function",
            {"Versions": [configuration(A) | {"Layers": [{"Arn": f"{LAYER}:4"}]}], "NextMarker": "n"},
            {"FunctionName": A},
        )
        stub.add_response(
            "list_versions_by_function",
            {"Versions": [configuration(A, "1") | {"Layers": [{"Arn": f"{LAYER}:3"}]}]},
            {"FunctionName": A, "Marker": "n"},
        )
        stub.add_response(
            "list_layer_versions", {"LayerVersions": [{"Version": 4}], "NextMarker": "m"}, {"LayerName": "D"}
        )
        stub.add_response(
            "list_layer_versions", {"LayerVersions": [{"Version": 3}]}, {"LayerName": "D", "Marker": "m"}
        )
        stub.add_response("delete_layer_version", {}, {"LayerName": "D", "VersionNumber": 3})
        versions = LambdaVersions(client)

        references = versions.layer_references(A)
        numbers = versions.layer_versions("D")
        versions.delete_layer_version("D", 3)
        stub.assert_no_pending_responses()

    assert references == {f"{LAYER}:3", f"{LAYER}:4"}
    assert numbers == [3, 4]


def test_the_prune_command_with_layers_says_which_layer_versions_it_would_delete(
    store: MongoStore, mongo_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "w.yaml").write_text("workflow: w\nphases:\n  p:\n    jobs:\n      a: {}\n")
    client = lambda_client()
    monkeypatch.setattr("boto3.client", lambda *args, **kwargs: client)
    on_layer = [configuration(A, "1") | {"Layers": [{"Arn": f"{LAYER}:2"}]}]
    with Stubber(client) as stub:
        # prune_versions: A's versions, the newest kept
        stub.add_response("list_functions", {"Functions": [configuration(A)]}, {})
        stub.add_response("list_versions_by_function", {"Versions": on_layer}, {"FunctionName": A})
        # prune_layers: the workflow's layer, its versions, then every function's references
        stub.add_response("list_functions", {"Functions": [configuration(A)]}, {})
        stub.add_response("list_versions_by_function", {"Versions": on_layer}, {"FunctionName": A})
        stub.add_response(
            "list_layer_versions",
            {"LayerVersions": [{"Version": number} for number in (1, 2, 3)]},
            {"LayerName": "Dependencies"},
        )
        stub.add_response("list_functions", {"Functions": [configuration(A)]}, {})
        stub.add_response("list_versions_by_function", {"Versions": on_layer}, {"FunctionName": A})
        result = cli(
            "prune", "w", "--keep", "1", "--layers", "--dry-run", "--workflows", str(tmp_path),
            "--mongo-uri", mongo_uri, "--database", store.settings.database,
        )  # fmt: skip
        stub.assert_no_pending_responses()

    assert result.exit_code == 0, result.stderr
    assert result.stdout == (
        "would delete layer Dependencies:1\nkept layer Dependencies:2 (a function version uses it)\n"
    )
