"""The bench code at a tiny scale: the invariants its figures rest on, never its timings."""

from __future__ import annotations

import pytest

from benchmarks import (
    console,
    executions,
    fan_out,
    job_limits,
    latency,
    orchestration,
    output_reads,
    reconciler,
    run_queue,
    synth,
    testkit,
    timers,
    trigger,
)
from runtime import limits
from runtime.definition.loader import workflow_from_document


def quiet(message: str) -> None:
    pass


def test_a_success_that_does_not_end_a_phase_costs_ours_at_most_two_round_trips(mongo_uri: str) -> None:
    figures = orchestration.measure_round_trips(mongo_uri)

    ours, seed = figures["round_trips_breakdown"]["ours"], figures["round_trips_breakdown"]["seed"]
    assert figures["round_trips_per_success"] <= 2
    assert ours["fan_out"]["dispatched"] == 3
    assert ours["no_successor"]["dispatched"] == 0
    # The counter sees every command: the seed's two jobs read the state twice and write it once.
    assert seed["fan_out"]["commands"] == ["find", "findAndModify", "find"]
    assert (seed["fan_out"]["reads"], seed["fan_out"]["writes"]) == (2, 1)


def test_simultaneous_successes_lose_no_completion_in_ours(mongo_uri: str) -> None:
    figures = orchestration.lost_updates(mongo_uri, threads=10, repeats=2, progress=quiet)

    assert figures["lost_updates_ours"] == 0
    assert figures["lost_updates_detail"]["handler_errors"] == []
    assert figures["lost_updates_detail"]["ours_next_phase_dispatches_per_burst"] == [1, 1]
    assert len(figures["lost_updates_detail"]["seed_per_burst"]) == 2


def test_the_throughput_workload_runs_both_sides_to_the_end(mongo_uri: str) -> None:
    # Each side raises when a run of its workload does not finish.
    figures = orchestration.throughput(mongo_uri, runs=1, rounds=1, workers=2, progress=quiet)

    assert figures["throughput_workload"]["successes_per_run"] == 9
    assert figures["events_per_second_ours"] > 0
    assert figures["events_per_second_seed"] > 0


def test_under_every_fault_no_jobs_code_runs_more_often_than_its_attempts(mongo_uri: str) -> None:
    figures = executions.executions_against_attempts(mongo_uri, runs=3, progress=quiet, seed=5)

    detail = figures["executions_against_attempts"]
    assert figures["executions_beyond_attempts"] == 0, detail["jobs_beyond_attempts"]
    assert detail["executions"] <= detail["attempts"]
    assert detail["runs_succeeded"] + detail["runs_failed"] == 3
    counters = detail["fault_counters"]
    assert counters["duplicated"] > 0
    assert counters["crashes"] > 0, "the faults must have happened for the figure to mean anything"


@pytest.mark.parametrize("jobs", [10, 100, 500])
def test_generated_specs_are_valid_workflows_with_fan_out_and_joins(jobs: int) -> None:
    definition = workflow_from_document(synth.generated_spec(f"bench_{jobs}", jobs))

    all_jobs = list(definition.jobs())
    assert len(all_jobs) == jobs
    assert len(definition.phases) >= 2
    assert any(len(job.after) > 1 for job in all_jobs), "no join"
    assert any(len(phase.dependents(phase.roots[0].name)) > 1 for phase in definition.phases), "no fan-out"


def test_the_trigger_match_forwards_only_what_a_rule_consumes_and_the_figures_say_so(mongo_uri: str) -> None:
    figures = trigger.trigger_figures(mongo_uri, quiet, specs=[orchestration.CATCH_THE_FISH])

    fish = figures["trigger_events"]["catch_the_fish"]
    # One run of catch_the_fish: started and success per job, and the run's own statuses.
    assert fish["status_documents_by_status"] == {
        "phase_completed": 2,
        "started": 9,
        "success": 9,
        "workflow_started": 1,
        "workflow_succeeded": 1,
    }
    # Its match forwards what the orchestrator and its notify.on [failed, workflow_succeeded] consume.
    assert figures["trigger_match"] == {
        "fullDocument.status": {
            "$in": [
                "approved",
                "callback_completed",
                "callback_heartbeat",
                "cancel_requested",
                "event_awaited",
                "event_received",
                "failed",
                "not_run",
                "redrive_requested",
                "rejected",
                "success",
                "timer_fired",
                "workflow_started",
                "workflow_succeeded",
            ]
        }
    }
    assert (fish["status_documents"], fish["forwarded_by_match"]) == (22, 11)
    assert fish["trigger_executions_per_job"] == {"before_match": 2.44, "after_match": 1.22}
    assert fish["handler_invocations"] == {"orchestrator": 10, "notifier": 1}
    assert fish["step_functions_transitions"] == 9 + 1  # a Task per job, a Parallel for the fan-out
    cost = fish["estimated_usd_per_1000_jobs"]
    assert cost["ours_with_match"] < cost["ours_without_match"]
    assert cost["step_functions_standard"] == pytest.approx(1000 / 9 * 10 * 0.025 / 1000, abs=1e-6)


def test_a_reconciler_pass_costs_two_reads_per_idle_run_and_repairs_every_broken_one(mongo_uri: str) -> None:
    figures = reconciler.reconciler_cost(mongo_uri, ended=20, running=4, progress=quiet)["reconciler_pass"]

    idle, repair = figures["idle"], figures["repair"]
    assert (idle["runs_checked"], idle["runs_repaired"], idle["writes"]) == (4, 0, 0)
    # The stale runs and the recent operations, then the run and its statuses for each run, then
    # the slots held and the queued runs of run concurrency, and the open tickets of job limits
    # (none here).
    assert idle["commands"] == 2 + 2 * 4 + 3
    assert (repair["runs_repaired"], repair["statuses_applied"], repair["redispatched"]) == (4, 2, 2)
    assert repair["dispatched"] == 4, "b after each lost success, and each lost attempt again"


def test_an_item_success_costs_the_orchestrator_the_same_at_any_width(mongo_uri: str) -> None:
    figures = fan_out.cost_per_item_success(mongo_uri, quiet, widths=(250, 600), measured_successes=60)

    cost = figures["fan_out_cost_per_item"]
    assert cost["250"]["item_successes_measured"] == cost["600"]["item_successes_measured"] == 60
    # Every measured success has a next item in its lane at both widths: the same commands.
    assert cost["250"]["commands_per_item_success"] == cost["600"]["commands_per_item_success"]
    assert figures["fan_out_bytes_ratio"] <= 1.1
    assert cost["600"]["run_document_bytes"] < 64 * 1024


def test_the_local_runs_of_a_fan_out_and_of_static_jobs_both_finish(mongo_uri: str) -> None:
    figures = fan_out.local_wall_times(mongo_uri, quiet, widths=(10, 20))

    runs = figures["fan_out_local_runs"]
    assert set(runs) == {"fan_out_10", "static_jobs_10", "fan_out_20", "static_jobs_20"}
    assert figures["largest_run_document_bytes"] == max(run["run_document_bytes"] for run in runs.values())
    assert figures["fan_out_local_seconds"] == pytest.approx(runs["fan_out_20"]["seconds"], abs=0.05)
    per_item = runs["fan_out_20"]["seconds"] / 20 / (runs["fan_out_10"]["seconds"] / 10)
    assert figures["fan_out_local_per_item_ratio"] == pytest.approx(per_item, rel=0.2)


def test_the_console_benchmark_draws_every_one_of_the_500_jobs_in_order_of_its_marks(mongo_uri: str) -> None:
    figures = console.render_time(mongo_uri, 1, quiet)["console_render_500_jobs"]

    assert figures["jobs_drawn"] == 500
    marks = figures["ms_from_navigation_start_median"]
    assert list(marks.values()) == sorted(marks.values())
    assert marks["graph-painted"] > marks["run-fetched"] > 0


def test_the_console_benchmark_pages_through_the_runs_it_inserted(mongo_uri: str) -> None:
    figures = console.runs_page_times(mongo_uri, 1200, 1, quiet)["console_runs_page_ms"]

    assert figures["runs"] == 1200
    assert all(value > 0 for value in figures["median_ms"].values())


def test_every_timer_of_the_timer_benchmark_fires_and_none_before_it_is_due(mongo_uri: str) -> None:
    figures = timers.timer_lateness(mongo_uri, 8, quiet)

    assert figures["timers_fired"] == 8
    for way in ("local", "cloud"):
        late = figures[f"timer_lateness_{way}_ms"]
        assert 0 <= late["min"] <= late["median"] <= late["p95"] <= late["max"]


def test_the_memory_benchmark_reads_an_output_within_the_limit_and_refuses_one_past_it(
    mongo_uri: str,
) -> None:
    cases = (("within", 256 * 1024, "objects"), ("past", 5 * 1024 * 1024, "rows"))
    figures = output_reads.output_read_memory(mongo_uri, quiet, cases)

    within, past = figures["output_read_memory"]["within"], figures["output_read_memory"]["past"]
    assert within["output_bytes"] <= 256 * 1024 < limits.OUTPUT_READ_MAX_BYTES < past["output_bytes"]
    assert (within["run"], within["use"], within["error"]) == ("running", "dispatched", None)
    assert (past["run"], past["use"]) == ("failed", "failed")
    assert "a when or for_each may read at most" in past["error"]
    assert 0 < within["rss_before_mib"] <= within["rss_peak_mib"]
    assert figures["output_read_peak_mib"] == max(within["rss_peak_mib"], past["rss_peak_mib"])


def test_the_test_kit_skips_days_of_virtual_time_and_every_scenario_succeeds(mongo_uri: str) -> None:
    figures = testkit.virtual_speed(mongo_uri, repeats=1, progress=quiet)

    scenarios = figures["testkit_scenarios"]
    assert scenarios["wait_then_approval_timeout"]["virtual_seconds"] == 3 * 86400
    assert scenarios["three_retries_hour_backoff"]["virtual_seconds"] == 86400 + (1 + 2 + 4) * 3600
    assert figures["testkit_virtual_seconds_per_wall_second"] > 1


def test_the_latency_model_sums_its_hops_draw_by_draw() -> None:
    hops = [
        latency.Hop("a", "measured", latency.Constant(1.5)),
        latency.Hop("b", "published", latency.Constant(40.0)),
        latency.Hop("c", "measured", latency.Measured((7.0, 7.0))),
    ]

    steps = latency.compose(hops, samples=50)

    assert steps == [48.5] * 50
    assert latency.summary(steps) == {"p50": 48.5, "p99": 48.5, "samples": 50}
    assert latency.percentile(list(range(1, 101)), 0.99) == 99
    assert latency.percentile(list(range(1, 101)), 0.50) == 50


def test_a_published_hop_is_drawn_with_the_p50_and_p99_it_was_given() -> None:
    hop = latency.Hop("eventbridge", "published", latency.LogNormal(148, 387))

    figures = latency.summary(latency.compose([hop], samples=20_000))

    assert figures["p50"] == pytest.approx(148, rel=0.03)
    assert figures["p99"] == pytest.approx(387, rel=0.08)


def test_the_fast_path_is_todays_path_with_the_hand_off_in_place_of_the_trigger_and_eventbridge(
    mongo_uri: str,
) -> None:
    times = latency.measure_hops(mongo_uri, runs=2, jobs=3, progress=quiet)

    # Two runs of three jobs: six attempts of the wrapper; the economy run's two handlings that
    # dispatch a next job, the fast run's two hand-offs that do, and its three duplicates.
    assert (len(times.wrapper_start_ms), len(times.report_ms), len(times.trigger_ms)) == (6, 6, 6)
    assert (len(times.orchestrator_ms), len(times.handoff_ms), len(times.duplicate_ms)) == (2, 2, 3)
    assert {delivery: len(counts) for delivery, counts in times.commands.items()} == {
        "trigger": 3,
        "handoff": 3,
        "duplicate": 3,
    }
    today, fast = latency.today_path(times), latency.fast_path(times)
    assert [hop.name for hop in fast] == [
        today[0].name,
        "Lambda async invoke of the orchestrator (the hand-off)",
        "orchestrator reads the handed-off status, decides, dispatches",
        *[hop.name for hop in today[4:]],
    ]
    assert fast[2].distribution == latency.Measured(tuple(times.handoff_ms))
    model = latency.cloud_model(times, samples=200)
    assert model["step_functions_standard"] == {"p50": 142, "p99": 313, "origin": "published"}
    assert model["today"]["p50"] <= model["today"]["p99"]
    cost = latency.delivery_cost(times)
    # The hand-off reads the status the trigger's event carries: one command more, at least.
    assert cost["fast"]["orchestrator_mongodb_commands"] > cost["economy"]["orchestrator_mongodb_commands"]


def test_the_dev_server_benchmark_measures_one_step_per_job_after_the_first(mongo_uri: str) -> None:
    figures = latency.dev_server_steps(mongo_uri, runs=1, jobs=3, progress=quiet)

    assert (figures["samples"], figures["runs"], figures["jobs_per_run"]) == (2, 1, 3)
    assert 0 <= figures["p50"] <= figures["p99"]


def test_the_run_queue_benchmark_keeps_the_limit_and_costs_the_limited_side_more(mongo_uri: str) -> None:
    figures = run_queue.run_queue(mongo_uri, runs=12, limit=3, progress=quiet)

    limited, free = figures["run_queue"]["limited"], figures["run_queue"]["unlimited"]
    assert (limited["runs_ended"], free["runs_ended"]) == (12, 12)
    assert figures["run_queue_most_in_flight"] == limited["most_in_flight"] == 3
    assert free["most_in_flight"] == 12
    assert figures["run_queue_extra_commands_per_run"] > 0
    assert limited["longest_queue_wait_s"] > free["longest_queue_wait_s"]


def test_the_rate_limit_benchmark_never_dispatches_more_than_the_limit_in_a_second(mongo_uri: str) -> None:
    figures = job_limits.rate_limited_fan_out(mongo_uri, quiet, items=30, rate=10)

    run = figures["rate_limit_fan_out"]
    assert sum(run["dispatches_per_window"]) == sum(run["starts_per_window"]) == 30
    assert figures["rate_limit_max_per_window"] == run["dispatches_per_window_max"] <= 10
    assert run["unlimited_starts_per_second_mean"] > 0
    below = run["below_engine_pace"]
    assert sum(below["dispatches_per_window"]) == 30
    assert max(below["dispatches_per_window"]) <= 5
    assert run["commands_per_item"] > run["unlimited_commands_per_item"] > 0
