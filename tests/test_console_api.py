"""The console's HTTP side on a real server: uvicorn serving the Starlette app over a store on
the test MongoDB. Runs are started as the starter starts them; their states and creation times
are then set in the run documents, which is all the runs page reads. Nothing delivers the
statuses here, so a run stays as the test left it."""

from __future__ import annotations

import json
import re
import select
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cdk_app.console.listing import RunFilters, runs_page
from cdk_app.console.server import serving_console
from runtime.definition.loader import load_workflow
from runtime.documents.run import StatusEvent
from runtime.service.runs import start_run
from runtime.statuses import StatusName
from runtime.store.connection import cached_client
from runtime.store.mongo import MongoStore
from runtime.store.settings import StoreSettings
from tests.cli_harness import cli

REPO = Path(__file__).resolve().parents[1]
SPECS = REPO / "tests" / "specs" / "dev"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: Any


@dataclass
class Console:
    url: str
    store: MongoStore

    def request(
        self, path: str, method: str = "GET", headers: dict[str, str] | None = None, body: bytes | None = None
    ) -> Response:
        request = urllib.request.Request(self.url + path, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                raw, status, got = answer.read(), answer.status, dict(answer.headers)
        except urllib.error.HTTPError as error:
            raw, status, got = error.read(), error.code, dict(error.headers)
        text = raw.decode()
        is_json = got.get("content-type", "").startswith("application/json")
        return Response(status, {k.lower(): v for k, v in got.items()}, json.loads(text) if is_json else text)

    def act(self, action: str, run_id: str, **headers: str) -> Response:
        return self.request(f"/api/run/{action}?id={run_id}", "POST", {"X-Console-Action": "1", **headers})

    def act_on_job(self, action: str, job: str, body: object, **headers: str) -> Response:
        """An action on a job of run ``r`` with a JSON body (bytes are sent as they are)."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {"X-Console-Action": "1", "Content-Type": "application/json", **headers}
        return self.request(f"/api/run/{action}?id=r&job={job}", "POST", headers, data)

    def add_run(self, run_id: str, workflow: str = "quick", state: str = "running", **extra: Any) -> None:
        """A run started as the starter does, then put in ``state`` at the creation time given."""
        definition = load_workflow(SPECS / f"{workflow}.yaml")
        start_run(self.store, definition, run_id=run_id, input=extra.pop("input", {}))
        self.store.runs.update_one({"_id": run_id}, {"$set": {"status": state, **extra}})


@pytest.fixture
def store(mongo_uri: str, store_settings: StoreSettings) -> MongoStore:
    store = MongoStore(cached_client(mongo_uri), store_settings)
    store.ensure_indexes()
    return store


def _console(store: MongoStore, allow_actions: bool) -> Iterator[Console]:
    with serving_console(store, "127.0.0.1", 0, allow_actions) as url:
        yield Console(url.rstrip("/"), store)


@pytest.fixture
def console(store: MongoStore) -> Iterator[Console]:
    yield from _console(store, allow_actions=True)


@pytest.fixture
def read_only(store: MongoStore) -> Iterator[Console]:
    yield from _console(store, allow_actions=False)


def _ids(response: Response) -> list[str]:
    assert response.status == 200, response.body
    return [run["run_id"] for run in response.body["runs"]]


# -- the headers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/run?id=x", "/api/runs", "/static/run.js", "/vendor/dagre.min.js"])
def test_every_response_carries_the_strict_content_security_policy(console: Console, path: str) -> None:
    response = console.request(path)

    assert response.status == 200
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "default-src 'none'" in policy
    assert "unsafe-inline" not in policy


def test_the_pages_load_scripts_from_the_console_only_and_have_no_inline_script(console: Console) -> None:
    for page in ("/", "/run?id=x"):
        html = console.request(page).body
        scripts = [line for line in html.splitlines() if "<script" in line]
        assert scripts
        assert all('src="/' in line and "></script>" in line for line in scripts), scripts
        assert "style=" not in html


def test_the_layout_library_is_the_pinned_npm_package(console: Console) -> None:
    pinned = json.loads((Path(__file__).resolve().parents[1] / "package.json").read_text())
    library = Path(__file__).resolve().parents[1] / "node_modules" / "@dagrejs" / "dagre"

    response = console.request("/vendor/dagre.min.js")

    assert (
        json.loads((library / "package.json").read_text())["version"]
        == pinned["dependencies"]["@dagrejs/dagre"]
    )
    assert response.body == (library / "dist" / "dagre.min.js").read_text()


def test_a_host_name_the_console_does_not_answer_to_is_refused(console: Console) -> None:
    assert console.request("/api/runs", headers={"Host": "evil.example"}).status == 400


# -- the runs page -------------------------------------------------------------------------------


def test_runs_come_newest_first_in_pages_that_cover_each_run_once_even_when_times_tie(
    console: Console, store: MongoStore
) -> None:
    # 7 runs at 3 creation times, in pages of 2: page boundaries fall inside both ties.
    times = [T0, T0, T0, T0 + timedelta(seconds=1), *[T0 + timedelta(seconds=2)] * 3]
    for number, moment in enumerate(times):
        console.add_run(f"run-{number}", createdAt=moment)
    seen: list[str] = []
    cursor = None
    while True:
        page = runs_page(store, RunFilters(), cursor, size=2)
        seen += [run.run_id for run in page.runs]
        cursor = page.next_page
        if cursor is None:
            break

    created = {f"run-{number}": when for number, when in enumerate(times)}
    assert sorted(seen) == sorted(created)
    assert len(seen) == len(set(seen))
    assert [created[run_id] for run_id in seen] == sorted(times, reverse=True)


def test_pages_of_a_long_listing_follow_each_other(console: Console, store: MongoStore) -> None:
    for number in range(120):
        console.add_run(f"run-{number:03}", createdAt=T0 + timedelta(seconds=number // 2))

    first = console.request("/api/runs").body
    second = console.request(f"/api/runs?page={first['next_page']}").body
    third = console.request(f"/api/runs?page={second['next_page']}").body

    listed = [run["run_id"] for page in (first, second, third) for run in page["runs"]]
    assert [len(page["runs"]) for page in (first, second, third)] == [50, 50, 20]
    assert third["next_page"] is None
    assert sorted(listed) == [f"run-{number:03}" for number in range(120)]
    stamps = [(store.load_run(run_id) or {})["createdAt"] for run_id in listed]
    assert stamps == sorted(stamps, reverse=True)


def test_the_filters_select_by_workflow_status_time_and_text_in_the_id_or_the_input(console: Console) -> None:
    console.add_run("alpha-1", "quick", "running", createdAt=T0, input={"customer": "ACME Corp"})
    console.add_run(
        "alpha-2", "quick", "failed", createdAt=T0 + timedelta(hours=1), input={"customer": "Initech"}
    )
    console.add_run("beta-1", "waits", "failed", createdAt=T0 + timedelta(hours=2), input={"note": "a.c*e"})
    console.add_run("beta-2", "waits", "succeeded", createdAt=T0 + timedelta(hours=3), input={})

    assert _ids(console.request("/api/runs?workflow=waits")) == ["beta-2", "beta-1"]
    assert _ids(console.request("/api/runs?status=failed")) == ["beta-1", "alpha-2"]
    assert _ids(console.request("/api/runs?workflow=quick&status=failed")) == ["alpha-2"]
    since, until = (T0 + timedelta(minutes=30)).isoformat(), (T0 + timedelta(hours=2)).isoformat()
    assert _ids(console.request(f"/api/runs?since={since}&until={until}".replace("+", "%2B"))) == ["alpha-2"]
    assert _ids(console.request("/api/runs?q=acme")) == ["alpha-1"]
    assert _ids(console.request("/api/runs?q=BETA")) == ["beta-2", "beta-1"]
    # Taken literally: "." and "*" are not patterns.
    assert _ids(console.request("/api/runs?q=a.c*e")) == ["beta-1"]


def test_counts_by_state_follow_the_other_filters(console: Console) -> None:
    console.add_run("a", "quick", "running", createdAt=T0)
    console.add_run("b", "quick", "failed", createdAt=T0)
    console.add_run("c", "waits", "failed", createdAt=T0, input={"customer": "ACME"})
    console.add_run("d", "waits", "succeeded", createdAt=T0)

    everything = console.request("/api/counts?status=failed").body["counts"]
    waits = console.request("/api/counts?workflow=waits").body["counts"]
    acme = console.request("/api/counts?q=acme").body["counts"]

    assert everything == {"queued": 0, "running": 1, "succeeded": 1, "failed": 2, "cancelled": 0}
    assert waits == {"queued": 0, "running": 0, "succeeded": 1, "failed": 1, "cancelled": 0}
    assert acme == {"queued": 0, "running": 0, "succeeded": 0, "failed": 1, "cancelled": 0}


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("status=stuck", "unknown run status 'stuck'"),
        ("page=not-a-cursor", "is not one the console made"),
        ("since=yesterday", "Invalid isoformat string"),
    ],
)
def test_a_bad_filter_is_a_400_that_says_what_is_wrong(console: Console, query: str, message: str) -> None:
    response = console.request(f"/api/runs?{query}")

    assert response.status == 400
    assert message in response.body["error"]


# -- the run page ---------------------------------------------------------------------------------


def test_the_run_document_gives_every_job_its_state_and_attempts_from_the_statuses(console: Console) -> None:
    console.add_run("r", "quick")
    console.store.runs.update_one({"_id": "r"}, {"$set": {"jobs.a.state": "dispatched", "jobs.a.attempt": 1}})
    started = StatusEvent(
        run_id="r", workflow="quick", phase="one", job="a", status=StatusName.STARTED, attempt=1
    )
    started_at = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    console.store.insert_status(started.to_document(started_at))

    run = console.request("/api/run?id=r").body

    states = {job["name"]: job["state"] for phase in run["phases"] for job in phase["jobs"]}
    assert states == {"a": "dispatched", "b": "pending", "c": "pending"}
    assert [phase["name"] for phase in run["phases"]] == ["one", "two"]
    assert run["attempts"] == [
        {
            "job": "a",
            "phase": "one",
            "attempt": 1,
            "kind": "code",
            "started": started_at.isoformat(),
            "ended": None,
            "status": "started",
            "error": None,
            "items": None,
        }
    ]
    assert [entry["status"] for entry in run["history"]] == ["workflow_started", "started"]
    assert run["actions"] == ["cancel"]


def test_the_failure_handlers_are_a_cluster_of_their_own_after_the_phases(console: Console) -> None:
    definition = load_workflow(REPO / "tests" / "specs" / "flow" / "on_failure_handlers.yaml")
    start_run(console.store, definition, run_id="handled")

    phases = console.request("/api/run?id=handled").body["phases"]

    assert [(phase["name"], phase["next"], phase["handlers"]) for phase in phases] == [
        ("work", "later", False),
        ("later", None, False),
        ("on_failure", None, True),
    ]
    assert [job["name"] for job in phases[-1]["jobs"]] == ["release_lock", "page"]
    assert phases[-1]["jobs"][1]["after"] == ["release_lock"]


def test_an_unknown_run_is_a_404(console: Console) -> None:
    response = console.request("/api/run?id=nope")

    assert (response.status, response.body) == (404, {"error": "no run 'nope' in this database"})


# -- actions ---------------------------------------------------------------------------------------


def test_a_read_only_console_offers_no_action_and_refuses_one_with_403(read_only: Console) -> None:
    read_only.add_run("r")

    offered = read_only.request("/api/run?id=r").body["actions"]
    refused = read_only.act("cancel", "r")

    assert offered == []
    assert refused.status == 403
    assert "--allow-actions" in refused.body["error"]
    assert read_only.store.find_status("r", None, None, StatusName.CANCEL_REQUESTED, 0) is None


def test_cancel_records_the_request_once(console: Console) -> None:
    console.add_run("r")

    first = console.act("cancel", "r")
    again = console.act("cancel", "r")

    assert (first.status, first.body) == (200, {"operation": "cancel_requested", "created": True})
    assert (again.status, again.body) == (200, {"operation": "cancel_requested", "created": False})
    assert console.store.find_status("r", None, None, StatusName.CANCEL_REQUESTED, 0) is not None


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Console-Action": ""},
        {"Origin": "http://evil.example"},
        {"Sec-Fetch-Site": "cross-site"},
    ],
    ids=["no-action-header", "other-origin", "cross-site-fetch"],
)
def test_an_action_from_anywhere_but_the_console_is_refused(
    console: Console, headers: dict[str, str]
) -> None:
    console.add_run("r")
    sent = {"X-Console-Action": "1", **headers}
    if not sent["X-Console-Action"]:
        del sent["X-Console-Action"]

    response = console.request("/api/run/cancel?id=r", "POST", sent)

    assert response.status == 403
    assert response.body == {"error": "actions are taken from the console's own pages only"}
    assert console.store.find_status("r", None, None, StatusName.CANCEL_REQUESTED, 0) is None


def test_an_action_from_the_console_origin_is_taken(console: Console) -> None:
    console.add_run("r")

    response = console.act("cancel", "r", Origin=console.url, **{"Sec-Fetch-Site": "same-origin"})

    assert response.status == 200, response.body


@pytest.mark.parametrize(
    ("action", "state", "message"),
    [
        ("cancel", "succeeded", "has already ended (succeeded): nothing to cancel"),
        ("redrive", "running", "is running: only a failed or cancelled run can be redriven"),
        ("redrive", "succeeded", "only a failed or cancelled run can be redriven"),
    ],
)
def test_an_action_the_run_state_forbids_is_a_409(
    console: Console, action: str, state: str, message: str
) -> None:
    console.add_run("r", state=state)

    response = console.act(action, "r")

    assert response.status == 409
    assert message in response.body["error"]


def test_redrive_of_a_failed_run_is_recorded(console: Console) -> None:
    console.add_run("r", state="failed")

    offered = console.request("/api/run?id=r").body["actions"]
    response = console.act("redrive", "r")

    assert offered == ["redrive"]
    assert (response.status, response.body["operation"]) == (200, "redrive_requested")
    assert console.store.find_status("r", None, None, StatusName.REDRIVE_REQUESTED, 1) is not None


def test_an_action_on_an_unknown_run_is_a_404(console: Console) -> None:
    assert console.act("redrive", "nope").status == 404


def test_a_get_cannot_act(console: Console) -> None:
    console.add_run("r")

    assert console.request("/api/run/cancel?id=r", headers={"X-Console-Action": "1"}).status == 405


def test_the_console_command_serves_any_database_and_prints_its_url(
    mongo_uri: str, store: MongoStore
) -> None:
    Console("", store).add_run("served")
    process = subprocess.Popen(
        [sys.executable, "-m", "cdk_app", "console", "--mongo-uri", mongo_uri, "--database",
         store.settings.database, "--port", "0"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 30)
        url = process.stdout.readline().strip() if ready else ""
        with urllib.request.urlopen(f"{url}api/runs", timeout=10) as answer:
            listed = json.loads(answer.read())
        refused = urllib.request.Request(
            f"{url}api/run/cancel?id=served", method="POST", headers={"X-Console-Action": "1"}
        )
        with pytest.raises(urllib.error.HTTPError, match="403"):
            urllib.request.urlopen(refused, timeout=10)
    finally:
        process.terminate()
        process.wait(timeout=30)

    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", url)
    assert [run["run_id"] for run in listed["runs"]] == ["served"]


def test_the_console_command_refuses_a_port_out_of_range(mongo_uri: str) -> None:
    done = cli("console", "--mongo-uri", mongo_uri, "--port", "70000")

    assert done.exit_code == 2
    assert "the console's port must be 0 to 65535, got 70000" in done.stderr
