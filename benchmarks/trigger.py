"""What a run costs in trigger executions and EventBridge events, before and after the trigger's
``match``, and an estimate of its cloud cost per job next to Step Functions Standard's.

Nothing here is guessed from the code: each spec runs once through the local runner (the real
handlers and job wrapper on the MongoDB server), the status documents the run inserted are read
back, and the ``$match`` the app synthesizes for the Atlas trigger (``constructs.trigger``) runs
as a MongoDB aggregation over them, shaped as Atlas's change events. Every insert the trigger
sees is one trigger execution and one partner event; the rules' own patterns then say which of
the forwarded events invoke the orchestrator and the notifier. Only the prices and the handler
duration are inputs (``PRICES``, ``HANDLER_MILLISECONDS``).
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pymongo

from cdk_app.local.atlas_events import envelope
from cdk_app.local.jobs import load_job_handlers
from cdk_app.local.runner import LocalRunner, RunOptions
from constructs.trigger import consumed_statuses, trigger_match
from runtime import contracts
from runtime.definition.loader import load_workflow
from runtime.definition.model import Workflow
from runtime.documents.run import RUN_ID, Document, StatusEvent
from runtime.patterns import notifier_pattern, orchestrator_pattern
from runtime.store.mongo import MongoStore
from runtime.store.settings import StoreSettings

if TYPE_CHECKING:
    from moto.events.utils import EventMessageType

Progress = Callable[[str], None]

WORKFLOWS = Path(__file__).resolve().parent.parent / "workflows"
RUN_INPUTS: dict[str, dict[str, Any]] = {
    "catch_the_fish": {},
    "nightly_report": {"mode": "full"},
    "order_fulfilment": {"items": [{"sku": "rod", "quantity": 1}]},
}
"""The run input of each example spec: the one that runs the most jobs."""

PRICES: dict[str, Any] = {
    "region": "us-east-1",
    "read_on": "2026-12-01",
    "lambda_per_request": 0.20 / 1e6,
    "lambda_per_gb_second_x86": 0.0000166667,
    "eventbridge_per_partner_event": 1.00 / 1e6,
    "step_functions_standard_per_transition": 0.025 / 1000,
    "atlas_trigger_per_execution": None,
    "sources": {
        "lambda": "https://aws.amazon.com/lambda/pricing/ ($0.20 per 1M requests, "
        "$0.0000166667 per GB-s, x86)",
        "eventbridge": "https://aws.amazon.com/eventbridge/pricing/ (partner events ingested: $1.00 per 1M, "
        "each 64 KB chunk one event)",
        "step_functions": "https://aws.amazon.com/step-functions/pricing/ (Standard: $0.025 per 1,000 state "
        "transitions, retries included)",
        "atlas_trigger": "https://www.mongodb.com/docs/atlas/app-services/billing/ counts trigger "
        "executions as App Services requests; no per-request rate was found in the documentation read, so "
        "executions are counted and not priced",
    },
}
"""Published on-demand prices, free tiers left out; ``None`` where no documented price was found."""

HANDLER_MILLISECONDS = 100
"""An assumption, not a measurement: billed duration of one orchestrator or notifier invocation
in the cloud (a warm function, one or two MongoDB commands to Atlas, a Lambda invoke per job it
dispatches). Locally one handling takes 2-3 ms of server time (``ms_per_event``)."""


class _Quiet:
    def status(self, event: StatusEvent) -> None:
        pass

    def notification(self, subject: str, message: str) -> None:
        pass


def trigger_figures(uri: str, progress: Progress, specs: Sequence[Path] | None = None) -> dict[str, Any]:
    """Per spec: status documents of one local run, how many the synthesized match forwards, what
    that means per job, and the estimated cost per job."""
    paths = sorted(WORKFLOWS.glob("*.yaml")) if specs is None else list(specs)
    workflows = [load_workflow(path) for path in paths]
    forwarded = consumed_statuses(workflows)
    match = json.loads(trigger_match(forwarded))
    figures: dict[str, Any] = {}
    client: pymongo.MongoClient[Document]
    with pymongo.MongoClient(uri, tz_aware=True) as client:
        for workflow in workflows:
            progress(f"trigger events of one run of {workflow.name}")
            figures[workflow.name] = _one_run(client, workflow, match)
    return {
        "trigger_match": match,
        "trigger_events": figures,
        "trigger_prices": PRICES | {"handler_milliseconds_assumed": HANDLER_MILLISECONDS},
    }


def _one_run(
    client: pymongo.MongoClient[Document], workflow: Workflow, match: dict[str, Any]
) -> dict[str, Any]:
    settings = StoreSettings(database=f"bench_trigger_{uuid.uuid4().hex[:8]}")
    store = MongoStore(client, settings)
    try:
        runner = LocalRunner(store, workflow, load_job_handlers(workflow), _Quiet(), RunOptions(timeout=60))
        report = runner.run(RUN_INPUTS.get(workflow.name, {}))
        if report.status != "succeeded":
            raise RuntimeError(f"the {workflow.name} run did not succeed: {report.status}")
        documents = list(store.statuses.find({RUN_ID: report.run_id}))
        forwarded = list(
            store.statuses.aggregate(
                [
                    {"$match": {RUN_ID: report.run_id}},
                    {"$project": {"fullDocument": "$$ROOT"}},
                    {"$match": match},
                ]
            )
        )
        events = [
            envelope(change["fullDocument"], settings.database, settings.statuses_collection)
            for change in forwarded
        ]
        invocations = _rule_invocations(workflow, settings, events)
    finally:
        client.drop_database(settings.database)
    jobs_run = sum(1 for job in report.jobs if job.attempts > 0)
    attempts = sum(job.attempts for job in report.jobs)
    per_job = {
        "before_match": round(len(documents) / jobs_run, 2),
        "after_match": round(len(forwarded) / jobs_run, 2),
    }
    transitions = step_functions_transitions(workflow, report.jobs)
    return {
        "jobs": len(list(workflow.jobs())),
        "jobs_run": jobs_run,
        "attempts": attempts,
        "status_documents": len(documents),
        "status_documents_by_status": dict(sorted(Counter(str(d["status"]) for d in documents).items())),
        "forwarded_by_match": len(forwarded),
        "trigger_executions_per_job": per_job,
        "eventbridge_events_per_job": per_job,
        "handler_invocations": invocations,
        "step_functions_transitions": transitions,
        "estimated_usd_per_1000_jobs": _cost_per_thousand_jobs(
            jobs_run, len(documents), len(forwarded), invocations, transitions
        ),
    }


def _rule_invocations(workflow: Workflow, settings: StoreSettings, events: list[Document]) -> dict[str, int]:
    """Forwarded events each rule's synthesized pattern matches (EventBridge's matching, as moto
    implements it): one invocation of that rule's function each."""
    from moto.events.models import EventPattern

    origin = {"database": settings.database, "statuses_collection": settings.statuses_collection}
    patterns = {"orchestrator": orchestrator_pattern(workflow.name, **origin)}
    if workflow.notify.on:
        patterns["notifier"] = notifier_pattern(workflow.name, workflow.notify.on, **origin)
    loaded = {target: EventPattern.load(json.dumps(pattern)) for target, pattern in patterns.items()}
    return {
        target: sum(pattern.matches_event(cast("EventMessageType", event)) for event in events)
        for target, pattern in loaded.items()
    }


def step_functions_transitions(workflow: Workflow, jobs: Sequence[Any]) -> int:
    """A lower bound for a hand-written Standard state machine of the same graph: one Task state
    per attempt, one Choice state per ``when`` evaluated, one Parallel state per fork (a phase
    with several first jobs, a job several others wait for) whose branches ran."""
    by_name = {job.name: job for job in jobs}
    ran = {name for name, job in by_name.items() if job.attempts > 0}
    tasks = sum(by_name[name].attempts for name in ran)
    choices = sum(
        1
        for job in workflow.jobs()
        if job.when is not None
        and (job.name in ran or by_name[job.name].status == "skipped")
        and all(dependency in ran for dependency in job.after)
    )
    forks = sum(
        1 for phase in workflow.phases if len(phase.roots) > 1 and any(j.name in ran for j in phase.roots)
    )
    forks += sum(
        1
        for phase in workflow.phases
        for job in phase.jobs
        if job.name in ran and len(phase.dependents(job.name)) > 1
    )
    return tasks + choices + forks


def _cost_per_thousand_jobs(
    jobs_run: int, inserts: int, forwarded: int, invocations: dict[str, int], transitions: int
) -> dict[str, float]:
    """Orchestration only, in USD per 1000 jobs run: the job functions cost the same under either
    design (Step Functions invokes the same Lambda functions), the MongoDB cluster is paid by the
    hour either way, and the Atlas trigger's executions are counted, not priced (``PRICES``)."""
    handler_seconds = HANDLER_MILLISECONDS / 1000
    memory_gb = contracts.SYSTEM_FUNCTION_MEMORY_MB / 1024
    per_invocation = (
        PRICES["lambda_per_request"] + memory_gb * handler_seconds * PRICES["lambda_per_gb_second_x86"]
    )
    handlers = sum(invocations.values()) * per_invocation
    scale = 1000 / jobs_run

    def ours(events: int) -> float:
        return scale * (events * PRICES["eventbridge_per_partner_event"] + handlers)

    step_functions = scale * transitions * PRICES["step_functions_standard_per_transition"]
    return {
        "ours_without_match": round(ours(inserts), 6),
        "ours_with_match": round(ours(forwarded), 6),
        "step_functions_standard": round(step_functions, 6),
        "step_functions_over_ours": round(step_functions / ours(forwarded), 1),
    }
