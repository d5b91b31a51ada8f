"""The console in a real headless browser (Debian's chromium), over a dev server that runs the
workflows: what a person sees and clicks. The ``waits`` workflow's ``blocked`` job runs until the
test creates its release file, so the test decides when the run advances. These tests never
skip: without chromium they fail, saying how to install it."""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from cdk_app.console.browser import BrowserMissing, headless_chromium
from cdk_app.console.server import serving_console
from cdk_app.local.atlas_events import envelope
from runtime.definition.loader import load_workflow, workflow_from_document
from runtime.service.orchestrator import Orchestrator
from runtime.service.runs import start_run
from runtime.statuses import StatusName
from runtime.store.connection import cached_client
from runtime.store.mongo import MongoStore
from runtime.store.settings import StoreSettings
from tests.engine_harness import RecordingDispatcher
from tests.test_dev_server import DEV_SPECS, WAIT, DevProcess, dev_server, wait_until

WAIT_SECONDS = 30


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    try:
        driver = headless_chromium()
    except BrowserMissing as missing:
        pytest.fail(str(missing))
    yield driver
    driver.quit()


@dataclass
class ConsoleServer:
    dev: DevProcess
    url: str
    folder: Path

    def start_waits(self, name: str) -> tuple[str, Path]:
        """A run of ``waits`` whose ``blocked`` job runs until the returned file exists."""
        release = self.folder / f"{name}.release"
        run_input = {"log": str(self.folder / f"{name}.log"), "release": str(release)}
        started = self.dev.cli("start", str(DEV_SPECS / "waits.yaml"), "--input", json.dumps(run_input))
        assert started.exit_code == 0, started.stderr
        return started.stdout.strip(), release


@contextmanager
def _console_of(tmp: Path, *options: str) -> Iterator[ConsoleServer]:
    with dev_server(
        tmp, "--data", "data", "--workflows", str(DEV_SPECS), "--console-port", "0", *options
    ) as dev:
        wait_until(lambda: "console on http://" in dev.stderr, "the console to listen")
        found = re.search(r"console on (http://\S+/)", dev.stderr)
        assert found is not None, dev.stderr
        yield ConsoleServer(dev, found.group(1), tmp)


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleServer]:
    """One dev server with actions allowed, for the tests of this module that act."""
    with _console_of(tmp_path_factory.mktemp("console"), "--allow-actions") as server:
        yield server


def _state_of(browser: WebDriver, job: str) -> str | None:
    nodes = browser.find_elements(By.CSS_SELECTOR, f'g.job[data-job="{job}"]')
    if not nodes:
        return None
    classes = (nodes[0].get_attribute("class") or "").split()
    return next((name.removeprefix("state-") for name in classes if name.startswith("state-")), None)


def _until(browser: WebDriver, what: str, condition: object) -> None:
    try:
        WebDriverWait(browser, WAIT_SECONDS, poll_frequency=0.1).until(condition)  # type: ignore[arg-type]
    except TimeoutException:
        pytest.fail(
            f"gave up waiting for {what}; the page said: {browser.find_element(By.TAG_NAME, 'main').text}"
        )


def _states(browser: WebDriver, expected: dict[str, str]) -> None:
    _until(
        browser,
        f"job states {expected}",
        lambda driver: {job: _state_of(driver, job) for job in expected} == expected,
    )


def test_the_runs_page_lists_a_run_started_in_the_test(browser: WebDriver, console: ConsoleServer) -> None:
    run_id, release = console.start_waits("listed")
    release.touch()
    assert console.dev.cli("status", run_id, "--wait", WAIT).exit_code == 0

    browser.get(console.url)
    _until(
        browser,
        f"run {run_id} in the list",
        lambda d: d.find_elements(By.CSS_SELECTOR, f'tr[data-run="{run_id}"]'),
    )

    row = browser.find_element(By.CSS_SELECTOR, f'tr[data-run="{run_id}"]')
    assert row.get_attribute("class") == "state-succeeded"
    assert row.find_element(By.CSS_SELECTOR, "td.status").text == "succeeded"
    assert row.find_element(By.TAG_NAME, "a").get_attribute("href") == f"{console.url}run?id={run_id}"
    counts = browser.find_element(By.CSS_SELECTOR, 'a.count[data-state="succeeded"]').text
    assert int(counts.split()[-1]) >= 1


def test_the_run_page_shows_every_job_in_its_state_and_follows_the_run_without_a_reload(
    browser: WebDriver, console: ConsoleServer
) -> None:
    run_id, release = console.start_waits("live")
    browser.get(f"{console.url}run?id={run_id}")
    _states(browser, {"quick": "succeeded", "blocked": "dispatched", "after_blocked": "pending"})
    # A reload would forget this: the same page must see the run advance.
    browser.execute_script("window.sameDocument = 'yes';")

    release.touch()

    _states(browser, {"quick": "succeeded", "blocked": "succeeded", "after_blocked": "succeeded"})
    assert browser.execute_script("return window.sameDocument;") == "yes"
    _until(browser, "the run's summary", lambda d: "succeeded" in d.find_element(By.ID, "summary").text)
    phases = [node.get_attribute("data-phase") for node in browser.find_elements(By.CSS_SELECTOR, "g.phase")]
    assert not browser.find_elements(By.CSS_SELECTOR, "g.phase.handlers")
    assert phases == ["only"]
    bars = browser.find_elements(By.CSS_SELECTOR, "#timeline rect.bar")
    assert len(bars) == 3
    history = browser.find_element(By.ID, "history").text
    assert "workflow_started" in history
    assert "workflow_succeeded" in history


def test_the_job_panel_shows_the_event_output_and_attempts_of_the_job_clicked(
    browser: WebDriver, console: ConsoleServer
) -> None:
    run_id, release = console.start_waits("panel")
    release.touch()
    assert console.dev.cli("status", run_id, "--wait", WAIT).exit_code == 0
    browser.get(f"{console.url}run?id={run_id}")
    _states(browser, {"after_blocked": "succeeded"})

    browser.find_element(By.CSS_SELECTOR, 'g.job[data-job="after_blocked"]').click()

    _until(browser, "the job panel", lambda d: "Job after_blocked" in d.find_element(By.ID, "panel").text)
    panel = browser.find_element(By.ID, "panel").text
    assert '"released": true' in panel  # the event's results: the output of the job it comes after
    assert '"job": "after_blocked"' in panel  # its own output
    assert "#1 success" in panel


def test_cancel_and_redrive_buttons_act_on_the_run(browser: WebDriver, console: ConsoleServer) -> None:
    run_id, release = console.start_waits("acted")
    browser.get(f"{console.url}run?id={run_id}")
    _states(browser, {"blocked": "dispatched"})
    assert not browser.find_elements(By.ID, "action-redrive")

    browser.find_element(By.ID, "action-cancel").click()

    _until(
        browser,
        "the run to be cancelled",
        lambda d: d.find_element(By.ID, "summary").text.startswith("cancelled"),
    )
    _states(browser, {"quick": "succeeded", "blocked": "cancelled", "after_blocked": "pending"})
    assert console.dev.cli("status", run_id, "--json").report["status"] == "cancelled"
    _until(browser, "the redrive button", lambda d: d.find_elements(By.ID, "action-redrive"))
    assert not browser.find_elements(By.ID, "action-cancel")

    browser.find_element(By.ID, "action-redrive").click()
    _states(browser, {"blocked": "dispatched"})
    release.touch()

    _states(browser, {"quick": "succeeded", "blocked": "succeeded", "after_blocked": "succeeded"})
    assert console.dev.cli("status", run_id, "--wait", WAIT).exit_code == 0
    assert not browser.find_elements(By.CSS_SELECTOR, "#actions button")


def test_an_approval_is_answered_from_the_run_page(browser: WebDriver, console: ConsoleServer) -> None:
    log = console.folder / "release.log"
    started = console.dev.cli(
        "start", str(DEV_SPECS / "release.yaml"), "--input", json.dumps({"log": str(log)})
    )
    assert started.exit_code == 0, started.stderr
    run_id = started.stdout.strip()
    browser.get(f"{console.url}run?id={run_id}")
    _states(browser, {"build": "succeeded", "sign_off": "waiting", "ship": "pending"})
    _until(browser, "the approve button", lambda d: d.find_elements(By.ID, "action-approve-sign_off"))
    assert "Ship the build?" in browser.find_element(By.ID, "actions").text

    browser.find_element(By.ID, "answer-sign_off").send_keys('{"ticket": "CHG-7"}')
    browser.find_element(By.ID, "action-approve-sign_off").click()

    _states(browser, {"build": "succeeded", "sign_off": "succeeded", "ship": "succeeded"})
    assert console.dev.cli("status", run_id, "--wait", WAIT).exit_code == 0
    report = console.dev.cli("status", run_id, "--json").report
    assert report["jobs"]["sign_off"]["output"] == {"ticket": "CHG-7"}
    assert not browser.find_elements(By.ID, "action-approve-sign_off")


def test_status_watch_redraws_until_the_run_ends(console: ConsoleServer) -> None:
    run_id, release = console.start_waits("watched")
    release.touch()

    watched = console.dev.cli("status", run_id, "--watch")

    assert watched.exit_code == 0, watched.stderr
    assert f"waits run {run_id}: succeeded" in watched.stdout
    assert re.search(r"after_blocked\s+succeeded", watched.stdout), watched.stdout


def test_status_watch_goes_with_neither_json_nor_wait(console: ConsoleServer) -> None:
    both = console.dev.cli("status", "any", "--watch", "--json")

    assert both.exit_code == 2
    assert "--watch draws a live table: it goes with neither --json nor --wait" in both.stderr


def test_a_read_only_console_has_no_action_buttons(browser: WebDriver, tmp_path: Path) -> None:
    with _console_of(tmp_path) as server:
        run_id, release = server.start_waits("read_only")
        browser.get(f"{server.url}run?id={run_id}")
        _states(browser, {"blocked": "dispatched"})
        buttons = browser.find_elements(By.CSS_SELECTOR, "#actions button")
        release.touch()
        assert server.dev.cli("status", run_id, "--wait", WAIT).exit_code == 0

    assert buttons == []


def test_the_failure_handlers_are_drawn_as_a_cluster_of_their_own(
    browser: WebDriver, mongo_uri: str, store_settings: StoreSettings
) -> None:
    store = MongoStore(cached_client(mongo_uri), store_settings)
    definition = load_workflow(
        Path(__file__).resolve().parent / "specs" / "flow" / "on_failure_handlers.yaml"
    )
    run_id = start_run(store, definition).run_id

    with serving_console(store, "127.0.0.1", 0, False) as url:
        browser.get(f"{url}run?id={run_id}")
        _states(browser, {"lock": "pending", "release_lock": "pending", "page": "pending"})
        handlers = browser.find_elements(By.CSS_SELECTOR, "g.phase.handlers")
        links = [
            (link.get_attribute("data-from"), link.get_attribute("data-to"))
            for link in browser.find_elements(By.CSS_SELECTOR, "path.phase-link")
        ]

    assert [cluster.get_attribute("data-phase") for cluster in handlers] == ["on_failure"]
    assert links == [("work", "later")]  # nothing leads into the handlers


def test_a_fan_out_of_10_000_items_is_one_node_with_its_counts(
    browser: WebDriver, mongo_uri: str, store_settings: StoreSettings
) -> None:
    store = MongoStore(cached_client(mongo_uri), store_settings)
    store.ensure_indexes()
    definition = workflow_from_document(
        {
            "workflow": "wide",
            "phases": {"p": {"jobs": {"fan": {"for_each": "input.items"}, "sum": {"after": ["fan"]}}}},
        }
    )
    run_id = start_run(store, definition, input={"items": list(range(10_000))}).run_id
    started = store.find_status(run_id, None, None, StatusName.WORKFLOW_STARTED, 0)
    assert started is not None
    dispatcher = RecordingDispatcher()
    Orchestrator(store, dispatcher).handle(
        envelope(started, store_settings.database, store_settings.statuses_collection)
    )
    assert len(dispatcher.drain()) == 100  # the first item of each of the 100 lanes

    with serving_console(store, "127.0.0.1", 0, False) as url:
        browser.get(f"{url}run?id={run_id}")
        _states(browser, {"fan": "dispatched", "sum": "pending"})
        nodes = browser.find_elements(By.CSS_SELECTOR, "g.job")
        fan = browser.find_element(By.CSS_SELECTOR, 'g.job[data-job="fan"]')
        counts = fan.find_element(By.CSS_SELECTOR, "text.items").text
        expression = fan.find_element(By.CSS_SELECTOR, "text.expression").text

    assert len(nodes) == 2  # the fan-out and its dependent, never a node per item
    assert "fan-out" in (fan.get_attribute("class") or "").split()
    assert counts == "0/10000 done, 0 failed, 100 running"
    assert expression == "for_each input.items"


def test_the_workflow_page_charts_runs_by_outcome_durations_and_the_slowest_jobs(
    browser: WebDriver, console: ConsoleServer
) -> None:
    run_id, release = console.start_waits("charted")
    release.touch()
    assert console.dev.cli("status", run_id, "--wait", WAIT).exit_code == 0

    browser.get(console.url)
    link = f'tr[data-run="{run_id}"] a.workflow'
    _until(browser, "the run's workflow link", lambda d: d.find_elements(By.CSS_SELECTOR, link))
    browser.find_element(By.CSS_SELECTOR, link).click()
    _until(
        browser,
        "the slowest jobs",
        lambda d: d.find_elements(By.CSS_SELECTOR, '#slowest rect[data-job="blocked"]'),
    )

    assert browser.find_element(By.ID, "title").text == "Workflow waits"
    with urllib.request.urlopen(f"{console.url}api/workflow?name=waits") as response:  # noqa: S310 - local
        stats = json.load(response)
    drawn = {
        (bar.get_attribute("data-hour"), bar.get_attribute("data-state")): int(
            bar.get_attribute("data-count") or 0
        )
        for bar in browser.find_elements(By.CSS_SELECTOR, "#per-hour rect.bar")
    }
    assert drawn == {
        (hour["hour"], state): hour[state]
        for hour in stats["per_hour"]
        for state in ("succeeded", "failed", "cancelled", "running")
        if hour[state]
    }
    assert sum(count for (_, state), count in drawn.items() if state == "succeeded") >= 1
    percentiles = browser.find_elements(By.CSS_SELECTOR, "#durations rect[data-percentile]")
    assert [bar.get_attribute("data-percentile") for bar in percentiles] == ["p50", "p90", "p99"]
    slowest = [
        bar.get_attribute("data-job") for bar in browser.find_elements(By.CSS_SELECTOR, "#slowest rect")
    ]
    assert slowest == [job["job"] for job in stats["slowest_jobs"]]
    assert {"quick", "blocked", "after_blocked"} <= set(slowest)

    # The dev server's /metrics counts what its functions emitted, as Prometheus text.
    with urllib.request.urlopen(f"{console.url}metrics") as response:  # noqa: S310 - local
        text = response.read().decode()
    succeeded = re.search(r'^workflows_runs_succeeded_total\{workflow="waits"\} (\d+)$', text, re.MULTILINE)
    assert succeeded is not None, text
    assert int(succeeded.group(1)) >= 1
    assert 'workflows_attempt_duration_seconds_count{workflow="waits",job="blocked"}' in text
