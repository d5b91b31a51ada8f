"""``make bench``: every figure of benchmarks/README.md, written to benchmarks/results.json.

``python -m benchmarks [--only engine|synth|trigger|console|timers|fanout|memory|testkit|latency|observe|
queue|joblimits] [--pairs N] [--repeats N] [--output FILE]``;
the defaults are what results.json was made with (five to eight minutes on two cores). With
``--only``, the figures of that part replace theirs in the output file and the others stay.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pymongo

from benchmarks import (
    console,
    executions,
    fan_out,
    job_limits,
    latency,
    observe,
    orchestration,
    output_reads,
    reconciler,
    run_queue,
    synth,
    testkit,
    timers,
    trigger,
)
from cdk_app.local.embedded_mongo import mongodb_uri
from runtime import contracts

RESULTS = Path(__file__).resolve().parent / "results.json"

TARGETS = {
    "synth_overhead_ratio": "<= 1.25",
    "synth_largest_over_smallest": "<= 3.0 (500 jobs against 10)",
    "round_trips_per_success": "<= 2",
    "lost_updates_ours": "== 0, while lost_updates_seed > 0",
    "events_per_second_ratio": ">= 2.0 (issue 31)",
    "executions_beyond_attempts": "== 0 (jobs whose code ran more often than their attempts)",
    "fan_out_commands_ratio": "<= 1.5 (commands per item success, 10,000 items against 10)",
    "fan_out_bytes_ratio": "<= 1.5 (bytes per item success, 10,000 items against 10)",
    "fan_out_local_seconds": "<= 120 (a local fan-out of 10,000 items, wall time on two cores)",
    "fan_out_local_per_item_ratio": "<= 1.2 (local time per item, 10,000 items against 1,000)",
    "console_render_500_jobs_ms": "< 2000 (headless chromium, navigation start to the graph on screen)",
    "timer_lateness_local_ms": "max < 1000 (a due timer fires within a second locally)",
    "timer_lateness_cloud_ms": "max < 60000 (within a minute in the cloud)",
    "output_read_peak_mib": "< 256 (the orchestrator's Lambda memory; a when over any output allowed)",
    "testkit_virtual_seconds_per_wall_second": ">= 100000 (a day of waits in under a second)",
    "step_latency_fast_path_p50_ms": "< 142 (Step Functions Standard's p50; modelled, delivery fast)",
    "telemetry_commands_added_per_attempt": "== 0 (MongoDB commands tracing and metrics add)",
    "run_queue_most_in_flight": "<= 10 (1,000 runs with concurrency: {limit: 10}, from the statuses log)",
    "rate_limit_max_per_window": "<= 20 (dispatches of a rate_limit 20/s job in any one-second window)",
    "rate_limit_share_while_waiting": ">= 0.9 (of the limit, in the seconds work waited)",
    "rate_limit_share_below_engine_pace": ">= 0.9 (the same, under 5/s, a limit the engine outpaces)",
}


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def memory_gib() -> float | None:
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return None
    return round(pages / 2**30, 1)


def machine(uri: str) -> dict[str, Any]:
    client: pymongo.MongoClient[dict[str, Any]]
    with pymongo.MongoClient(uri) as client:
        server = client.server_info().get("version", "?")
    kind = "external" if os.environ.get(contracts.MONGODB_URI) else "SecantusDB (embedded)"
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "memory_gib": memory_gib(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "pymongo": pymongo.__version__,
        "mongodb_server": f"{kind} {server}",
        "load_average_at_start": [round(value, 2) for value in os.getloadavg()],
        **synth.tool_versions(),
    }


def verdicts(results: dict[str, Any]) -> dict[str, bool]:
    checks = {
        "synth_overhead_ratio": lambda r: r["synth_overhead_ratio"] <= 1.25,
        "synth_largest_over_smallest": lambda r: r["synth_largest_over_smallest"] <= 3.0,
        "round_trips_per_success": lambda r: r["round_trips_per_success"] <= 2,
        "lost_updates_ours": lambda r: r["lost_updates_ours"] == 0 and r["lost_updates_seed"] > 0,
        "events_per_second_ratio": lambda r: r["events_per_second_ratio"] >= 2.0,
        "executions_beyond_attempts": lambda r: r["executions_beyond_attempts"] == 0,
        "fan_out_commands_ratio": lambda r: r["fan_out_commands_ratio"] <= 1.5,
        "fan_out_bytes_ratio": lambda r: r["fan_out_bytes_ratio"] <= 1.5,
        "fan_out_local_seconds": lambda r: r["fan_out_local_seconds"] <= 120,
        "fan_out_local_per_item_ratio": lambda r: r["fan_out_local_per_item_ratio"] <= 1.2,
        "console_render_500_jobs_ms": lambda r: r["console_render_500_jobs_ms"] < 2000,
        "timer_lateness_local_ms": lambda r: r["timer_lateness_local_ms"]["max"] < 1000,
        "timer_lateness_cloud_ms": lambda r: r["timer_lateness_cloud_ms"]["max"] < 60_000,
        "output_read_peak_mib": lambda r: r["output_read_peak_mib"] < 256,
        "testkit_virtual_seconds_per_wall_second": lambda r: (
            r["testkit_virtual_seconds_per_wall_second"] >= 100_000
        ),
        "step_latency_fast_path_p50_ms": lambda r: r["step_latency_fast_path_p50_ms"] < 142,
        "telemetry_commands_added_per_attempt": lambda r: r["telemetry_commands_added_per_attempt"] == 0,
        "run_queue_most_in_flight": lambda r: r["run_queue_most_in_flight"] <= r["run_queue"]["limit"],
        "rate_limit_max_per_window": lambda r: r["rate_limit_max_per_window"] <= job_limits.RATE,
        "rate_limit_share_while_waiting": lambda r: r["rate_limit_share_while_waiting"] >= 0.9,
        "rate_limit_share_below_engine_pace": lambda r: r["rate_limit_share_below_engine_pace"] >= 0.9,
    }
    return {name: check(results) for name, check in checks.items() if name in results}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "--only",
        choices=[
            "engine",
            "synth",
            "trigger",
            "console",
            "timers",
            "fanout",
            "memory",
            "testkit",
            "latency",
            "observe",
            "queue",
            "joblimits",
        ],
        help="one part of the bench",
    )
    parser.add_argument("--pairs", type=int, default=5, help="interleaved synth pairs (default 5)")
    parser.add_argument("--repeats", type=int, default=3, help="synths per workflow size (default 3)")
    parser.add_argument("--threads", type=int, default=50, help="simultaneous successes (default 50)")
    parser.add_argument("--bursts", type=int, default=20, help="lost-update repetitions (default 20)")
    parser.add_argument("--runs", type=int, default=20, help="throughput runs per side and round")
    parser.add_argument("--faulty-runs", type=int, default=100, help="runs under every fault (default 100)")
    parser.add_argument("--ended", type=int, default=10_000, help="ended runs beside the reconciler's")
    parser.add_argument("--running", type=int, default=100, help="stale running runs a pass checks")
    parser.add_argument("--console-runs", type=int, default=100_000, help="runs behind the runs page")
    parser.add_argument("--page-loads", type=int, default=5, help="loads of the 500-job run page")
    parser.add_argument("--timers", type=int, default=200, help="wait-job timers fired per way")
    parser.add_argument("--kit-repeats", type=int, default=5, help="runs of each test-kit scenario")
    parser.add_argument("--chain-runs", type=int, default=30, help="chain runs per step-latency measure")
    parser.add_argument("--observed-runs", type=int, default=10, help="runs per telemetry mode")
    parser.add_argument("--queued-runs", type=int, default=1000, help="runs of the run-queue burst")
    parser.add_argument("--output", type=Path, default=RESULTS, help="default benchmarks/results.json")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    results: dict[str, Any] = {}
    with mongodb_uri() as uri:
        results["machine"] = machine(uri)
        progress(f"machine: {json.dumps(results['machine'])}")
        if args.only in (None, "engine"):
            progress("round trips of one success, ours and the seed's")
            results.update(orchestration.measure_round_trips(uri))
            # Throughput before the bursts: the embedded server slows down as writes pile up in it
            # (both sides alike, but the side that writes more, more).
            results.update(orchestration.throughput(uri, args.runs, 3, 4, progress))
            results.update(orchestration.lost_updates(uri, args.threads, args.bursts, progress))
            results.update(executions.executions_against_attempts(uri, args.faulty_runs, progress))
        if args.only in (None, "fanout"):
            results.update(fan_out.cost_per_item_success(uri, progress))
            results.update(fan_out.local_wall_times(uri, progress))
        if args.only in (None, "trigger"):
            results.update(trigger.trigger_figures(uri, progress))
            results.update(reconciler.reconciler_cost(uri, args.ended, args.running, progress))
        if args.only in (None, "console"):
            results.update(console.render_time(uri, args.page_loads, progress))
            results.update(console.runs_page_times(uri, args.console_runs, args.repeats, progress))
        if args.only in (None, "timers"):
            results.update(timers.timer_lateness(uri, args.timers, progress))
        if args.only in (None, "memory"):
            results.update(output_reads.output_read_memory(uri, progress))
        if args.only in (None, "testkit"):
            results.update(testkit.virtual_speed(uri, args.kit_repeats, progress))
        if args.only in (None, "latency"):
            results.update(latency.step_latency(uri, progress, args.chain_runs, dev_runs=args.chain_runs))
        if args.only in (None, "observe"):
            results.update(observe.telemetry_cost(uri, args.observed_runs, progress))
        if args.only in (None, "queue"):
            results.update(run_queue.run_queue(uri, args.queued_runs, 10, progress))
        if args.only in (None, "joblimits"):
            results.update(job_limits.rate_limited_fan_out(uri, progress))
    if args.only in (None, "synth"):
        results.update(synth.measure_overhead(args.pairs, progress))
        results.update(synth.measure_sizes([10, 100, 500], args.repeats, progress))
    results["machine"]["load_average_at_end"] = [round(value, 2) for value in os.getloadavg()]
    results["targets"] = {
        name: {"target": TARGETS[name], "met": met} for name, met in verdicts(results).items()
    }
    results["bench_seconds"] = round(time.perf_counter() - started, 1)
    if args.only is not None and args.output.is_file():
        kept = json.loads(args.output.read_text(encoding="utf-8"))
        results = {**kept, **results, "targets": {**kept.get("targets", {}), **results["targets"]}}
    args.output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    progress(f"wrote {args.output} in {results['bench_seconds']} s")
    for name, verdict in results["targets"].items():
        status = "met" if verdict["met"] else "MISSED"
        print(f"  {name}: {results[name]} (target {verdict['target']}): {status}")
    for name, figures in results.get("trigger_events", {}).items():
        per_job, usd = figures["trigger_executions_per_job"], figures["estimated_usd_per_1000_jobs"]
        print(
            f"  {name}: trigger executions and events per job {per_job['before_match']} -> "
            f"{per_job['after_match']} with the match; estimated USD per 1000 jobs {usd['ours_with_match']}, "
            f"Step Functions Standard {usd['step_functions_standard']}"
        )
    for line in latency.side_by_side(results):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
