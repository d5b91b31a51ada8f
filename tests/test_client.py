"""``runtime.client``, what a script imports: it starts and operates runs on a connection string
as the CLI does, through the same use cases."""

from __future__ import annotations

from runtime.client import list_runs, open_store, request_cancel, run_history, start_run
from runtime.statuses import RunState, StatusName
from runtime.store.settings import StoreSettings
from tests.engine_harness import CATCH_THE_FISH


def test_a_script_starts_lists_and_cancels_a_run(mongo_uri: str, store_settings: StoreSettings) -> None:
    # GIVEN a store opened from the connection string alone
    store = open_store(mongo_uri, database=store_settings.database)

    # WHEN a script starts a run, then asks for it to be cancelled
    started = start_run(store, CATCH_THE_FISH, run_id="scripted-1", input={"lake": "Ontario"})
    receipt = request_cancel(store, started.run_id, "changed plans")

    # THEN the run is listed, and its history holds the start and the request, in that order
    assert started.created
    assert receipt.created
    assert [(run.run_id, run.status) for run in list_runs(store)] == [("scripted-1", RunState.RUNNING)]
    assert [entry.status for entry in run_history(store, "scripted-1")] == [
        StatusName.WORKFLOW_STARTED,
        StatusName.CANCEL_REQUESTED,
    ]


def test_the_store_it_opens_has_the_indexes_the_functions_rely_on(
    mongo_uri: str, store_settings: StoreSettings
) -> None:
    store = open_store(mongo_uri, database=store_settings.database)
    assert "running_by_wake" in store.runs.index_information()
