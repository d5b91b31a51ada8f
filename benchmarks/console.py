"""The console's figures: a run of 500 jobs drawn in headless chromium, and the runs page over
a large number of runs.

**Render**: a run of ``synth.generated_spec``'s 500 jobs (5 phases, fan-outs and joins) with
every job in some state, served by the console on this process's store; chromium opens its run
page and the page's own performance marks say when the run document arrived, when dagre had laid
the graph out, when the SVG was drawn and when the frame after it was on screen, all in ms from
the navigation's start. Median of ``repeats`` page loads (each a fresh load, the browser warm).

**Runs page**: ``runs`` run documents of three workflows in four states over a month, inserted in
batches (each holds what the runs page reads: id, workflow, state, phase, times, the searchable
input, not a definition: the page never reads one). Then the API calls the page makes, through
HTTP, each the median of ``repeats``: the first page, the 20th page by following the cursors,
filtered by state, by workflow and state, by a time range, a text search that matches one run in
ten and one that matches a single run, and the counts by state.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pymongo
import yaml

from benchmarks.orchestration import Progress
from benchmarks.synth import generated_spec
from cdk_app.console.browser import headless_chromium
from cdk_app.console.server import serving_console
from runtime.definition.loader import load_workflow
from runtime.service.runs import start_run
from runtime.statuses import JobState
from runtime.store.connection import cached_client
from runtime.store.mongo import MongoStore
from runtime.store.settings import StoreSettings

RENDER_JOBS = 500
MARKS = ("run-fetched", "graph-laid-out", "graph-drawn", "graph-painted")
WORKFLOWS = ("billing", "ingest", "reports")
STATES = ("succeeded", "succeeded", "succeeded", "failed", "cancelled", "running")
"""A run's state by its number, cycling: most runs succeed."""
BATCH = 5_000


@contextmanager
def _store(uri: str, name: str) -> Iterator[MongoStore]:
    settings = StoreSettings(database=f"bench_console_{name}_{int(time.time())}")
    client: pymongo.MongoClient[dict[str, Any]] = cached_client(uri)
    store = MongoStore(client, settings)
    store.ensure_indexes()
    try:
        yield store
    finally:
        client.drop_database(settings.database)


def _wide_run(store: MongoStore) -> str:
    """A started run of 500 jobs, its jobs set to every state in turn."""
    with tempfile.TemporaryDirectory() as folder:
        spec = Path(folder) / "wide.yaml"
        spec.write_text(
            yaml.safe_dump(generated_spec("wide", RENDER_JOBS), sort_keys=False), encoding="utf-8"
        )
        workflow = load_workflow(spec)
    run_id = start_run(store, workflow, run_id="wide-run").run_id
    states = [JobState.SUCCEEDED, JobState.SUCCEEDED, JobState.DISPATCHED, JobState.FAILED, JobState.PENDING]
    names = [job.name for phase in workflow.phases for job in phase.jobs]
    store.runs.update_one(
        {"_id": run_id},
        {
            "$set": {
                f"jobs.{name}.state": states[index % len(states)].value for index, name in enumerate(names)
            }
        },
    )
    return run_id


def render_time(uri: str, repeats: int, progress: Progress) -> dict[str, Any]:
    progress(f"console: a run of {RENDER_JOBS} jobs drawn in headless chromium, {repeats} page loads")
    browser = headless_chromium()
    marks: dict[str, list[float]] = {mark: [] for mark in MARKS}
    nodes = 0
    try:
        with _store(uri, "render") as store, serving_console(store, "127.0.0.1", 0, False) as url:
            run_id = _wide_run(store)
            for _ in range(repeats + 1):  # the first load warms the browser's cache and JIT
                browser.get(f"{url}run?id={run_id}")
                deadline = time.monotonic() + 60
                found: dict[str, float] = {}
                while len(found) < len(MARKS) and time.monotonic() < deadline:
                    found = browser.execute_script(
                        "return Object.fromEntries(performance.getEntriesByType('mark')"
                        ".map((mark) => [mark.name, mark.startTime]));"
                    )
                    time.sleep(0.05)
                for mark in MARKS:
                    marks[mark].append(found[mark])
                nodes = len(browser.find_elements("css selector", "g.job"))
    finally:
        browser.quit()
    median = {mark: round(statistics.median(values[1:]), 1) for mark, values in marks.items()}
    return {
        "console_render_500_jobs_ms": median["graph-painted"],
        "console_render_500_jobs": {
            "jobs_drawn": nodes,
            "ms_from_navigation_start_median": median,
            "layout_ms_median": round(
                statistics.median(
                    laid - fetched
                    for laid, fetched in zip(
                        marks["graph-laid-out"][1:], marks["run-fetched"][1:], strict=True
                    )
                ),
                1,
            ),
            "page_loads": repeats,
        },
    }


def _fill(store: MongoStore, runs: int, progress: Progress) -> datetime:
    """``runs`` run-shaped documents over 30 days ending now; returns the oldest time."""
    now = datetime.now(UTC).replace(microsecond=0)
    spacing = timedelta(days=30) / runs
    oldest = now - spacing * runs
    for start in range(0, runs, BATCH):
        documents = []
        for number in range(start, min(runs, start + BATCH)):
            created = oldest + spacing * number
            customer = "acme" if number % 10 == 0 else f"customer-{number % 997}"
            documents.append(
                {
                    "_id": f"run-{number:07d}",
                    "workflow": WORKFLOWS[number % len(WORKFLOWS)],
                    "status": STATES[number % len(STATES)],
                    "phase": "done",
                    "createdAt": created,
                    "updatedAt": created,
                    "inputText": f'{{"customer":"{customer}","order":{number}}}',
                    "error": None,
                }
            )
        store.runs.insert_many(documents, ordered=False)
        if start % (BATCH * 20) == 0:
            progress(f"console: {start + len(documents)} of {runs} runs inserted")
    return oldest


def _timed(call: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        call()
        times.append(time.perf_counter() - began)
    return round(statistics.median(times) * 1000, 1)


def runs_page_times(uri: str, runs: int, repeats: int, progress: Progress) -> dict[str, Any]:
    progress(f"console: the runs page over {runs} runs")
    with _store(uri, "runs") as store, serving_console(store, "127.0.0.1", 0, False) as url:
        began = time.perf_counter()
        oldest = _fill(store, runs, progress)
        inserted = time.perf_counter() - began

        def get(query: str) -> Any:
            with urllib.request.urlopen(f"{url}api/{query}", timeout=120) as answer:
                return answer.read()

        def twentieth_page() -> None:
            cursor = None
            for _ in range(20):
                body = json.loads(get("runs" + (f"?page={cursor}" if cursor else "")))
                cursor = body["next_page"]

        week = (oldest + timedelta(days=10)).isoformat().replace("+", "%2B")
        week_end = (oldest + timedelta(days=17)).isoformat().replace("+", "%2B")
        calls: dict[str, Callable[[], Any]] = {
            "first_page": lambda: get("runs"),
            "twentieth_page_by_cursors_each": twentieth_page,
            "failed_only": lambda: get("runs?status=failed"),
            "workflow_and_state": lambda: get("runs?workflow=ingest&status=cancelled"),
            "a_week_in_the_middle": lambda: get(f"runs?since={week}&until={week_end}"),
            "text_one_run_in_ten": lambda: get("runs?q=acme"),
            "text_one_run": lambda: get(f"runs?q=run-{runs // 2:07d}"),
            "counts_by_state": lambda: get("counts"),
            "counts_of_a_workflow": lambda: get("counts?workflow=billing"),
        }
        figures = {}
        for name, call in calls.items():
            figures[name] = _timed(call, repeats)
            progress(f"console: {name} {figures[name]} ms")
        figures["twentieth_page_by_cursors_each"] = round(figures["twentieth_page_by_cursors_each"] / 20, 1)
    return {
        "console_runs_page_ms": {"runs": runs, "median_ms": figures, "insert_seconds": round(inserted, 1)}
    }
