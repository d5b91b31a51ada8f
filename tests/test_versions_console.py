"""The console's upgrade button (docs/operating.md, "Versions and deploys"): beside redrive when
the console knows a spec folder, it asks for ``redrive --upgrade`` and answers a refusal with
the reason as a 409; the run page shows the deploy a run is pinned to."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from cdk_app.console.server import serving_console
from cdk_app.local.snapshots import CodeSnapshots
from runtime.client import Client
from runtime.definition.loader import load_workflow
from runtime.service.operations import OperationReceipt
from runtime.statuses import StatusName
from runtime.store.connection import cached_client
from runtime.store.mongo import MongoStore
from runtime.store.settings import StoreSettings
from tests.test_console_api import SPECS, Console


@pytest.fixture
def store(mongo_uri: str, store_settings: StoreSettings) -> MongoStore:
    store = MongoStore(cached_client(mongo_uri), store_settings)
    store.ensure_indexes()
    return store


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    copy = tmp_path / "workflows"
    shutil.copytree(SPECS, copy)
    return copy


@pytest.fixture
def upgrading(store: MongoStore, folder: Path) -> Iterator[Console]:
    def upgrade(store: MongoStore, run_id: str) -> OperationReceipt:
        return Client.on_store(store, workflows_dir=folder).redrive(run_id, upgrade=True)

    with serving_console(store, "127.0.0.1", 0, True, upgrade) as url:
        yield Console(url.rstrip("/"), store)


def test_the_upgrade_button_sits_beside_redrive_and_asks_for_an_upgrading_redrive(
    upgrading: Console, folder: Path, tmp_path: Path
) -> None:
    upgrading.add_run("u", state="failed")
    deployment = CodeSnapshots(tmp_path / "code").snapshot(load_workflow(folder / "quick.yaml"))
    upgrading.store.runs.update_one({"_id": "u"}, {"$set": {"deployment": deployment.to_document()}})

    page = upgrading.request("/api/run?id=u").body
    response = upgrading.act("upgrade", "u")

    assert page["actions"] == ["redrive", "upgrade"]
    assert page["deploy_id"] == deployment.deploy_id
    assert (response.status, response.body["operation"]) == (200, "redrive_requested")
    assert upgrading.store.find_status("u", None, None, StatusName.REDRIVE_REQUESTED, 1) is not None
    stored = upgrading.store.load_run("u")
    assert stored is not None
    assert stored["deployment"] is None, "pinned again at its next dispatch"


def test_an_upgrade_the_run_cannot_take_is_a_409_with_the_reason(upgrading: Console, folder: Path) -> None:
    upgrading.add_run("v", state="failed")
    upgrading.store.runs.update_one({"_id": "v"}, {"$set": {"jobs.a.state": "succeeded"}})
    spec = folder / "quick.yaml"
    spec.write_text(spec.read_text(encoding="utf-8").replace("a: {", "renamed: {"), encoding="utf-8")

    response = upgrading.act("upgrade", "v")

    assert response.status == 409
    assert "job 'a' succeeded, and the current definition has no such job" in response.body["error"]


def test_a_console_without_a_spec_folder_offers_no_upgrade(store: MongoStore) -> None:
    with serving_console(store, "127.0.0.1", 0, True) as url:
        console = Console(url.rstrip("/"), store)
        console.add_run("w", state="failed")

        offered = console.request("/api/run?id=w").body["actions"]
        refused = console.act("upgrade", "w")

    assert offered == ["redrive"]
    assert refused.status == 409
    assert "knows no spec folder to upgrade runs to" in refused.body["error"]
