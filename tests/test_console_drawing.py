"""What the run page draws, read back from the SVG in a real headless browser (Debian's
chromium): edges end with an arrowhead on the border of the box they lead to, no job covers a
phase's name, conditional and tolerated jobs carry their marks, and the timeline has rows for
the jobs that wait and a fan-out's real span. The run is played to its end by the engine
harness (timers fired and the approval answered by the test); these tests never skip."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pymongo
import pytest
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By

from cdk_app.console.server import serving_console
from runtime.clock import utcnow
from runtime.definition.loader import workflow_from_document
from runtime.service.approvals import answer_approval
from runtime.service.timers import fire_due_timers
from runtime.store.connection import cached_client
from runtime.store.mongo import MongoStore
from runtime.store.settings import StoreSettings
from tests.engine_harness import Driver
from tests.test_console_browser import _states, _until, browser

__all__ = ["browser"]  # the fixture this module shares

SPEC = {
    "workflow": "drawn",
    "phases": {
        "prepare": {
            "jobs": {
                "fetch": {},
                "cool_down": {"after": ["fetch"], "wait": 1},
                "maybe": {"after": ["fetch"], "when": "input.go"},
                "optional": {"after": ["fetch"], "allow_failure": True, "retries": 0},
            }
        },
        "process": {
            "jobs": {
                "sign_off": {"approval": {"timeout": 600}},
                "fan": {"after": ["sign_off"], "for_each": "input.items", "max_concurrency": 2},
                "report": {"after": ["fan"]},
                "audit": {"after": ["fetch"]},  # across phases only: still after the phase before
            }
        },
    },
    "on_failure": {"release_lock": {}, "page": {"after": ["release_lock"]}},
}

GEOMETRY = """
const box = (rect) => ({x: +rect.getAttribute('x'), y: +rect.getAttribute('y'),
  width: +rect.getAttribute('width'), height: +rect.getAttribute('height')});
const last = (path) =>
  path.getAttribute('d').trim().split(/[ML]/).filter(Boolean).pop().split(',').map(Number);
const edges = [...document.querySelectorAll('svg.run-graph g.edges path')].map((path) => {
  const to = path.dataset.to;
  const target = path.classList.contains('phase-link')
    ? document.querySelector(`g.phase[data-phase="${to}"] rect`)
    : document.querySelector(`g.job[data-job="${to}"] > rect:first-of-type`);
  return {cls: path.getAttribute('class'), to, marker: path.getAttribute('marker-end'),
          end: last(path), target: target ? box(target) : null};
});
const jobs = [...document.querySelectorAll('g.job > rect:first-of-type')].map((rect) =>
  ({job: rect.parentNode.dataset.job, ...box(rect)}));
const labels = [...document.querySelectorAll('g.phase text')].map((text) => {
  const b = text.getBBox();
  return {phase: text.parentNode.dataset.phase, x: b.x, y: b.y, width: b.width, height: b.height};
});
const clusters = [...document.querySelectorAll('g.phase')].map((phase) =>
  ({phase: phase.dataset.phase, ...box(phase.querySelector('rect'))}));
return {edges, jobs, labels, clusters, loose: document.querySelectorAll('circle.gate').length};
"""


def _played_run(store: MongoStore) -> str:
    """A run of SPEC played to its end: the wait's timer fired, the approval answered."""

    def fails(event: dict[str, Any], context: Any) -> Any:
        raise RuntimeError("optional thing broke")

    def slow(event: dict[str, Any], context: Any) -> Any:
        time.sleep(0.02)  # so the fan-out's span is more than a rounding
        return {"item": event["item"]}

    driver = Driver(store, workflow_from_document(SPEC), handlers={"optional": fails, "fan": slow})
    run_id = str(driver.run(run_input={"go": False, "items": [1, 2, 3, 4, 5]}).run["_id"])
    assert fire_due_timers(store, utcnow() + timedelta(seconds=5)) >= 1
    driver.settle(run_id)
    answer_approval(store, run_id, "sign_off", approve=True, output={})
    outcome = driver.settle(run_id)
    assert outcome.run["status"] == "succeeded", outcome.run
    return run_id


@pytest.fixture(scope="module")
def drawn(browser: WebDriver, mongo_client: pymongo.MongoClient[dict], mongo_uri: str) -> Iterator[WebDriver]:
    """The run page of one played run, shared by the tests of this module (a database of its own,
    dropped afterwards)."""
    settings = StoreSettings(database=f"test_{uuid.uuid4().hex[:12]}")
    store = MongoStore(cached_client(mongo_uri), settings)
    store.ensure_indexes()
    try:
        run_id = _played_run(store)
        with serving_console(store, "127.0.0.1", 0, False) as url:
            browser.get(f"{url}run?id={run_id}")
            _states(
                browser,
                {"audit": "succeeded", "report": "succeeded", "maybe": "skipped", "optional": "failed"},
            )
            _until(browser, "the timeline", lambda d: d.find_elements(By.CSS_SELECTOR, "#timeline rect.bar"))
            yield browser
    finally:
        mongo_client.drop_database(settings.database)


def _on_border(point: list[float], box: dict[str, float]) -> bool:
    x, y = point
    left, top, right, bottom = box["x"], box["y"], box["x"] + box["width"], box["y"] + box["height"]
    inside = left - 0.6 <= x <= right + 0.6 and top - 0.6 <= y <= bottom + 0.6
    return inside and min(abs(x - left), abs(x - right), abs(y - top), abs(y - bottom)) <= 0.6


def test_every_edge_ends_with_an_arrowhead_on_the_border_of_the_box_it_leads_to(drawn: WebDriver) -> None:
    geometry = drawn.execute_script(GEOMETRY)
    edges = geometry["edges"]

    loose = [edge for edge in edges if edge["target"] is None or not _on_border(edge["end"], edge["target"])]
    assert loose == []
    assert geometry["loose"] == 0
    links = [edge for edge in edges if edge["cls"] == "phase-link"]
    assert [edge["to"] for edge in links] == ["process"]  # one arrow between the phases, none to on_failure
    assert (
        len(edges) == 8
    )  # fetch -> 3 jobs and audit, sign_off -> fan -> report, release_lock -> page, the link
    assert {edge["marker"] for edge in edges} == {"url(#arrow)"}
    assert drawn.find_elements(By.CSS_SELECTOR, "svg.run-graph marker#arrow")


def _overlap(a: dict[str, float], b: dict[str, float]) -> bool:
    return (
        a["x"] < b["x"] + b["width"]
        and b["x"] < a["x"] + a["width"]
        and a["y"] < b["y"] + b["height"]
        and b["y"] < a["y"] + a["height"]
    )


def test_no_job_covers_the_name_of_a_phase(drawn: WebDriver) -> None:
    geometry = drawn.execute_script(GEOMETRY)
    overlap = _overlap

    labels = {label["phase"]: label for label in geometry["labels"]}
    covered = [
        (label["phase"], job["job"])
        for label in labels.values()
        for job in geometry["jobs"]
        if overlap(label, job)
    ]
    assert set(labels) == {"prepare", "process", "on_failure"}
    assert covered == []


def _within(inner: dict[str, float], outer: dict[str, float]) -> bool:
    return (
        outer["x"] <= inner["x"]
        and outer["y"] <= inner["y"]
        and inner["x"] + inner["width"] <= outer["x"] + outer["width"]
        and inner["y"] + inner["height"] <= outer["y"] + outer["height"]
    )


def test_each_job_lies_in_its_own_phases_cluster_and_the_clusters_do_not_overlap(drawn: WebDriver) -> None:
    geometry = drawn.execute_script(GEOMETRY)
    clusters = {cluster["phase"]: cluster for cluster in geometry["clusters"]}
    definition = workflow_from_document(SPEC)
    phase_of = {job.name: job.phase for job in definition.jobs()}

    outside = [job["job"] for job in geometry["jobs"] if not _within(job, clusters[phase_of[job["job"]]])]
    names = sorted(clusters)
    crossing = [(a, b) for a in names for b in names if a < b and _overlap(clusters[a], clusters[b])]

    assert outside == []
    assert crossing == []


def test_conditional_and_tolerated_jobs_are_drawn_apart_and_say_why(drawn: WebDriver) -> None:
    def job(name: str) -> Any:
        return drawn.find_element(By.CSS_SELECTOR, f'g.job[data-job="{name}"]')

    maybe, optional, fetch = job("maybe"), job("optional"), job("fetch")
    classes = {
        name: set((job(name).get_attribute("class") or "").split()) for name in ("maybe", "optional", "fetch")
    }

    assert {"conditional", "state-skipped"} <= classes["maybe"]
    assert {"tolerated", "state-failed"} <= classes["optional"]
    assert not {"conditional", "tolerated"} & classes["fetch"]
    assert maybe.find_element(By.CSS_SELECTOR, "g.conditional-badge").get_attribute("textContent") == "when"
    assert (
        optional.find_element(By.CSS_SELECTOR, "g.tolerated-badge").get_attribute("textContent") == "may fail"
    )
    assert not fetch.find_elements(By.CSS_SELECTOR, "g.badge")
    assert "skipped: its condition was false (when input.go)" in (
        maybe.find_element(By.TAG_NAME, "title").get_attribute("textContent") or ""
    )
    assert "allow_failure: if it fails, the run goes on" in (
        optional.find_element(By.TAG_NAME, "title").get_attribute("textContent") or ""
    )
    legend = drawn.find_element(By.ID, "legend").text
    assert "conditional: runs only when" in legend
    assert "allow_failure: if it fails, the run goes on" in legend


def test_the_timeline_shows_the_waits_and_the_fan_outs_span_and_counts(drawn: WebDriver) -> None:
    rows = drawn.find_element(By.ID, "timeline").text

    assert "cool_down #1 wait" in rows
    assert "sign_off #1 approval" in rows
    # Read in one script: the page redraws the timeline on every poll, which would leave elements
    # found by one call stale for the next.
    bars = {
        job: classes.split()
        for job, classes in drawn.execute_script(
            "return Array.from(document.querySelectorAll('#timeline rect.bar'))"
            ".map((bar) => [bar.dataset.job, bar.getAttribute('class') || ''])"
        )
    }
    assert {"fetch", "cool_down", "sign_off", "fan", "report", "optional"} <= set(bars)
    assert "kind-wait" in bars["cool_down"]
    assert "kind-approval" in bars["sign_off"]
    fan = drawn.execute_script(
        "return document.querySelector('#timeline text.duration[data-job=\"fan\"]').textContent"
    )
    assert fan.endswith(" · 5/5 done, 0 failed, 0 running"), fan
    took = re.fullmatch(r"(\d+(?:\.\d\d)?) (ms|s)", fan.split(" · ")[0])
    assert took is not None, fan
    assert float(took.group(1)) > 0, fan


def test_the_panel_of_a_wait_says_when_it_began_and_ended_waiting(drawn: WebDriver) -> None:
    drawn.find_element(By.CSS_SELECTOR, 'g.job[data-job="cool_down"]').click()

    _until(drawn, "the job panel", lambda d: "Job cool_down" in d.find_element(By.ID, "panel").text)
    attempts = drawn.find_element(By.ID, "panel").text.split("Attempts", 1)[1]
    assert re.search(r"#1 waited, started 20\d\d-\S+ \S+, ended 20\d\d-", attempts), attempts
