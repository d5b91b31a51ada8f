"""How fast the test kit skips time: virtual seconds simulated per wall second, on the example's
workflow (``examples/testing``): a day's wait, a two-day approval timeout, and three retries an
hour apart, each scenario run ``repeats`` times in a database of its own. The wall time counts
everything a test pays after the server is up (the database and its indexes, loading the spec,
the deliveries); the figure is the virtual time the runs covered over that wall time."""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.orchestration import Progress
from cdk_app.testkit import WorkflowTest, raises, returns, sequence

SPEC = Path(__file__).resolve().parents[1] / "examples" / "testing" / "workflows" / "renewal.yaml"
ORDER = {"customer": "ana@example.com", "amount": 120.0}


def _timeout(test: WorkflowTest) -> None:
    test.start(ORDER)
    test.run_until_idle(let_approvals_time_out=True)


def _retries(test: WorkflowTest) -> None:
    test.start(ORDER)
    test.run_until_idle()
    test.approve("discount")
    test.run_until_idle()


SCENARIOS: dict[str, tuple[Callable[[WorkflowTest], None], dict[str, Any]]] = {
    "wait_then_approval_timeout": (_timeout, {}),
    "three_retries_hour_backoff": (
        _retries,
        {"charge": sequence(*[raises(ConnectionError("down"))] * 3, returns({"charged": 120.0}))},
    ),
}


def virtual_speed(uri: str, repeats: int, progress: Progress) -> dict[str, Any]:
    # The failures the scenarios inject are logged by the job wrapper, with their tracebacks.
    logging.getLogger("runtime.service.job_attempt").setLevel(logging.CRITICAL)
    per_scenario: dict[str, Any] = {}
    virtual_total = wall_total = 0.0
    for name, (scenario, fakes) in SCENARIOS.items():
        walls, virtuals = [], []
        for _ in range(repeats):
            began = time.perf_counter()
            test = WorkflowTest(SPEC, uri, fakes=fakes)
            start = test.now
            try:
                scenario(test)
                status = test.get().status
            finally:
                test.close()
            walls.append(time.perf_counter() - began)
            virtuals.append((test.now - start).total_seconds())
            if status != "succeeded":
                raise RuntimeError(f"the {name} scenario ended {status}, not succeeded")
        virtual_total += sum(virtuals)
        wall_total += sum(walls)
        per_scenario[name] = {
            "virtual_seconds": virtuals[0],
            "wall_ms_median": round(statistics.median(walls) * 1000, 1),
        }
        median_ms = statistics.median(walls) * 1000
        progress(f"test kit: {name}: {virtuals[0]:,.0f} virtual s in {median_ms:.0f} ms")
    return {
        "testkit_virtual_seconds_per_wall_second": round(virtual_total / wall_total),
        "testkit_scenarios": per_scenario,
    }
