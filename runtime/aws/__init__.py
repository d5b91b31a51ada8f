"""The AWS adapters of the ports (``runtime.ports``): Lambda invocation, SNS and Slack, Lambda's
function versions (``lambda_versions``, for prune); the starter's version map (``versions``); and
what the functions tell about runs (docs/observability.md): ``metrics`` (CloudWatch embedded
metric format), ``tracing`` (OpenTelemetry, optional), ``logs`` (JSON log lines), ``telemetry``
(the hooks the job wrapper and the orchestrator call)."""
