"""A workflow's CloudWatch dashboard and the alarms its spec asks for (``alarms:``), on the
metrics its functions print as embedded metric format lines (``runtime.aws.metrics``).

Every metric the dashboard draws is one of ``runtime.aws.metrics.CATALOG`` with the dimensions
the functions give it; a test runs a workflow, collects the lines it prints and checks the
synthesized dashboard against them, both ways.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_sns as sns

from constructs import Construct
from constructs.monitoring import alarm_name
from runtime.aws import metrics
from runtime.definition import model

HOUR = Duration.hours(1)
WIDTH = 12
HEIGHT = 6
JOBS_PER_WIDGET = 100
"""Jobs one per-job graph draws; a larger workflow gets several graphs (CloudWatch draws at most
500 metrics in one)."""


def metric(
    workflow: str, which: metrics.Metric, statistic: str, *, job: str | None = None, label: str | None = None
) -> cloudwatch.Metric:
    """One of the workflow's metrics, per job when ``job`` is given, over an hour."""
    dimensions = {metrics.WORKFLOW: workflow} | ({} if job is None else {metrics.JOB: job})
    return cloudwatch.Metric(
        namespace=metrics.NAMESPACE,
        metric_name=which.name,
        dimensions_map=dimensions,
        statistic=statistic,
        period=HOUR,
        label=label or (job if job is not None else which.name),
    )


def spec_alarms(
    scope: Construct, workflow: model.Workflow, topic: sns.ITopic
) -> tuple[cloudwatch.Alarm, ...]:
    """The spec's ``alarms``: on the hourly share of ended runs that failed, and on the hourly
    p99 of the run duration; each notifies the topic."""
    name, thresholds = workflow.name, workflow.alarms
    alarms: list[cloudwatch.Alarm] = []
    if thresholds.failure_rate is not None:
        rate = cloudwatch.MathExpression(
            expression="IF(FILL(s, 0) + FILL(f, 0) + FILL(c, 0) > 0, "
            "FILL(f, 0) / (FILL(s, 0) + FILL(f, 0) + FILL(c, 0)), 0)",
            using_metrics={
                "s": metric(name, metrics.RUNS_SUCCEEDED, "Sum"),
                "f": metric(name, metrics.RUNS_FAILED, "Sum"),
                "c": metric(name, metrics.RUNS_CANCELLED, "Sum"),
            },
            period=HOUR,
            label="share of ended runs that failed",
        )
        alarms.append(
            cloudwatch.Alarm(
                scope,
                "FailureRateAlarm",
                alarm_name=alarm_name(name, "failure-rate"),
                alarm_description=f"{name}: more than {thresholds.failure_rate:g} of the runs that ended in "
                "an hour failed; see the dashboard's most failing jobs",
                metric=rate,
                threshold=thresholds.failure_rate,
                evaluation_periods=1,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
        )
    if thresholds.duration_p99 is not None:
        alarms.append(
            cloudwatch.Alarm(
                scope,
                "DurationP99Alarm",
                alarm_name=alarm_name(name, "duration-p99"),
                alarm_description=f"{name}: the 99th percentile of the run duration over an hour is past "
                f"{thresholds.duration_p99} seconds; see the dashboard's slowest jobs",
                metric=metric(name, metrics.RUN_DURATION, "p99"),
                threshold=thresholds.duration_p99,
                evaluation_periods=1,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
        )
    action = cloudwatch_actions.SnsAction(topic)
    for alarm in alarms:
        alarm.add_alarm_action(action)
    return tuple(alarms)


def _graph(
    title: str, left: Sequence[cloudwatch.IMetric], *, bars: bool = False, stacked: bool = False
) -> cloudwatch.GraphWidget:
    return cloudwatch.GraphWidget(
        title=title,
        left=list(left),
        width=WIDTH,
        height=HEIGHT,
        view=cloudwatch.GraphWidgetView.BAR if bars else cloudwatch.GraphWidgetView.TIME_SERIES,
        stacked=stacked,
        set_period_to_time_range=bars,
    )


def _per_job(
    title: str, workflow: str, jobs: Sequence[str], which: metrics.Metric, statistic: str
) -> list[cloudwatch.IWidget]:
    """A bar per job (over the dashboard's time range): which jobs are slowest, fail most."""
    widgets: list[cloudwatch.IWidget] = []
    for start in range(0, len(jobs), JOBS_PER_WIDGET):
        chunk = jobs[start : start + JOBS_PER_WIDGET]
        suffix = f" ({start + 1}-{start + len(chunk)})" if len(jobs) > JOBS_PER_WIDGET else ""
        widgets.append(
            _graph(title + suffix, [metric(workflow, which, statistic, job=job) for job in chunk], bars=True)
        )
    return widgets


def workflow_dashboard(
    scope: Construct, workflow: model.Workflow, alarms: Sequence[cloudwatch.IAlarm]
) -> cloudwatch.Dashboard:
    """The workflow's dashboard (``<workflow>-dashboard``): runs by outcome, run duration percentiles, job
    attempts and retries, the slowest and most failing jobs, the reconciler's repairs and the
    rejected statuses, how long queued runs waited and how late timers fired, and the state of
    every alarm of the workflow."""
    name = workflow.name
    jobs = [job.name for job in workflow.jobs() if job.runs_code]
    run_outcomes = [
        metric(name, which, "Sum")
        for which in (
            metrics.RUNS_STARTED,
            metrics.RUNS_SUCCEEDED,
            metrics.RUNS_FAILED,
            metrics.RUNS_CANCELLED,
        )
    ]
    durations = [
        metric(name, metrics.RUN_DURATION, statistic, label=f"run duration {statistic} (s)")
        for statistic in ("p50", "p90", "p99")
    ]
    attempts = [
        metric(name, which, "Sum")
        for which in (metrics.ATTEMPTS_SUCCEEDED, metrics.ATTEMPTS_FAILED, metrics.RETRIES)
    ]
    health = [
        metric(name, which, "Sum")
        for which in (
            metrics.RUNS_CHECKED,
            metrics.RUNS_REPAIRED,
            metrics.STATUSES_APPLIED,
            metrics.ATTEMPTS_REDISPATCHED,
            metrics.SLOTS_RELEASED,
            metrics.QUEUED_RUNS_STARTED,
            metrics.REJECTED_STATUSES,
        )
    ]
    waits = [
        metric(name, which, statistic, label=f"{label} {statistic} (s)")
        for which, label in ((metrics.QUEUE_WAIT, "queue wait"), (metrics.TIMER_LATENESS, "timer lateness"))
        for statistic in ("p50", "p99", "Maximum")
    ]
    widgets: list[cloudwatch.IWidget] = [
        _graph("Runs per hour by outcome", run_outcomes),
        _graph("Run duration (seconds)", durations),
        _graph("Job attempts per hour", attempts, stacked=True),
        _graph(
            "Attempt duration, all jobs (ms)",
            [
                metric(name, metrics.ATTEMPT_DURATION, statistic, label=f"attempt duration {statistic} (ms)")
                for statistic in ("p50", "p99")
            ],
        ),
        _graph("Reconciler and rejected statuses", health),
        _graph("Queue waits and late timers (seconds)", waits),
        *_per_job("Slowest jobs: attempt duration p99 (ms)", name, jobs, metrics.ATTEMPT_DURATION, "p99"),
        *_per_job("Most failing jobs: failed attempts", name, jobs, metrics.ATTEMPTS_FAILED, "Sum"),
        *_per_job("Succeeded attempts per job", name, jobs, metrics.ATTEMPTS_SUCCEEDED, "Sum"),
        *_per_job("Retries per job", name, jobs, metrics.RETRIES, "Sum"),
        cloudwatch.AlarmStatusWidget(title="Alarms", alarms=list(alarms), width=2 * WIDTH, height=HEIGHT),
    ]
    dashboard = cloudwatch.Dashboard(scope, "Dashboard", dashboard_name=f"{name}-dashboard")
    for start in range(0, len(widgets), 2):
        dashboard.add_widgets(*widgets[start : start + 2])
    return dashboard
