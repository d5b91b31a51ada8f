"""The time keys through the loader into the IR, and through the run snapshot and back."""

from __future__ import annotations

from pathlib import Path

from runtime.definition.loader import load_workflow
from runtime.definition.model import Approval, RetryPolicy, Workflow

SPEC = Path(__file__).resolve().parent / "specs" / "time" / "all_keys.yaml"


def test_the_default_policy_applies_unless_a_job_writes_its_own_and_no_code_jobs_never_retry() -> None:
    workflow = load_workflow(SPEC)

    default = RetryPolicy(
        max=3, delay=5, backoff=3, max_delay=120, jitter="none", on=("ConnectionError", "Lambda.Timeout")
    )
    assert workflow.job("upload").retry == default
    assert workflow.job("build").retry == RetryPolicy(max=1)
    assert workflow.job("cool_down").wait == 600
    assert workflow.job("cool_down").retry.max == 0
    assert workflow.job("sign_off").approval == Approval(timeout=3600, message="Ship it")
    assert workflow.timeout == 86400
    assert workflow.uses_timers


def test_the_snapshot_keeps_every_time_key() -> None:
    workflow = load_workflow(SPEC)

    again = Workflow.from_document(workflow.to_document())

    assert [(job.retry, job.wait, job.approval) for job in again.jobs()] == [
        (job.retry, job.wait, job.approval) for job in workflow.jobs()
    ]
    assert again.timeout == workflow.timeout


def test_a_snapshot_from_before_retry_policies_reads_its_retries_as_the_short_form() -> None:
    document = load_workflow(SPEC).to_document()
    for phase in document["phases"]:
        for job in phase["jobs"]:
            job["retries"] = job.pop("retry")["max"]
            del job["wait"], job["approval"]

    old = Workflow.from_document(document)

    assert old.job("upload").retry == RetryPolicy(max=3)
