"""What the synthesized stacks and the runtime must agree on, stated once: the environment
variables the constructs set and the handlers read, the name Atlas gives its partner event
sources, and the size of the workflow's own functions. Standard library only (Lambda imports it).
"""

from __future__ import annotations

LAMBDA_PYTHON_VERSION = "3.14"
"""The Python every function runs on (``constructs.lambda_runtime.PYTHON_RUNTIME``): the local
runner warns when job code runs on another."""

MONGODB_URI = "MONGODB_URI"
"""The connection string itself: local runs and tests, and in IAM mode the cluster's address
without credentials (set by the constructs then, never holding a password)."""
MONGODB_SECRET_ARN = "MONGODB_SECRET_ARN"
"""The Secrets Manager secret holding the connection string (password mode only)."""
MONGODB_AUTH = "MONGODB_AUTH"
"""``MONGODB-AWS`` in IAM mode: the function signs in with AWS credentials, no password."""
MONGODB_AWS_MECHANISM = "MONGODB-AWS"
"""``MONGODB_AUTH``'s one value: sign in with AWS credentials (``pymongo[aws]``)."""
MONGODB_AWS_AUTH_SOURCE = "$external"
"""Where Atlas keeps the database users of IAM roles."""
MONGODB_ROLE_ARN = "MONGODB_ROLE_ARN"
"""In IAM mode, the role whose credentials sign in (the job functions' per-workflow job database
role); unset, the function's own role signs in."""
MONGODB_DATABASE = "MONGODB_DATABASE"
"""The database holding both collections."""
RUNS_COLLECTION = "RUNS_COLLECTION"
"""The collection with one document per run."""
STATUSES_COLLECTION = "STATUSES_COLLECTION"
"""The append-only collection of status events the trigger watches."""
NOTIFICATIONS_COLLECTION = "NOTIFICATIONS_COLLECTION"
"""The collection of the notifier's claims, one per status it reports."""
LEASES_COLLECTION = "LEASES_COLLECTION"
"""The collection of job attempts' leases, one per attempt being run."""
ITEMS_COLLECTION = "ITEMS_COLLECTION"
"""The collection of the items of ``for_each`` jobs, one document per item."""
SLOTS_COLLECTION = "SLOTS_COLLECTION"
"""The collection of run concurrency's slots, one document per workflow and key."""
EVENTS_COLLECTION = "EVENTS_COLLECTION"
"""The collection of events sent to workflows, kept for event jobs that wait later."""
WORKFLOW_NAME = "WORKFLOW_NAME"
"""The reconciler's workflow: it repairs runs of that workflow only."""
JOB_HANDLER = "JOB_HANDLER"
"""``module.function`` of a job's own code; unset, the job runs the stub."""
INVOKE_FUNCTION = "INVOKE_FUNCTION"
"""An ``invoke`` job's: the existing Lambda function it calls (ARN or name, with its qualifier)."""
INVOKE_PAYLOAD = "INVOKE_PAYLOAD"
"""An ``invoke`` job's ``payload`` (JMESPath over ``{input, results, item, index}``); unset, the
function gets the job's event."""
CALL_REQUEST = "CALL_REQUEST"
"""A ``call`` job's: its ``call`` mapping as JSON (service, action, resource, params)."""
HTTP_REQUEST = "HTTP_REQUEST"
"""An ``http`` job's: its ``http`` mapping as JSON (url, method, headers, body, secret, ...)."""
WORKFLOW_DEFINITION_FILE = "WORKFLOW_DEFINITION_FILE"
"""The starter's bundled definition, relative to the function's code folder."""
JOB_VERSIONS = "JOB_VERSIONS"
"""The starter's: the version of each job function this deploy published, comma-separated, in
the order of the bundled definition's jobs that run code (numbers only: a map of 300 ARNs would
not fit in Lambda's 4 KB of environment)."""
NOTIFY_TOPIC_ARN = "NOTIFY_TOPIC_ARN"
"""The notifier's SNS topic."""
SLACK_WEBHOOK_SECRET_ARN = "SLACK_WEBHOOK_SECRET_ARN"
"""The notifier's Slack webhook secret, when the spec names one."""
STATUS_KEY_SECRET_ARN = "STATUS_KEY_SECRET_ARN"
"""The control plane's status signing key (docs/architecture.md, "Trust"): a Secrets Manager
secret the orchestrator, reconciler, starter and notifier read, and no job function."""
ORCHESTRATOR_FUNCTION = "ORCHESTRATOR_FUNCTION"
"""On a job function of a workflow with ``delivery: fast``: the orchestrator function the job
wrapper hands each recorded report's id to; unset with ``economy``."""
OPERATOR_STATUS_KEY = "WORKFLOWS_STATUS_KEY"
"""For the CLI and console: the status key itself, as hex (a local tool's setting, never a
deployed function's)."""
OPERATOR_STATUS_KEY_SECRET_ARN = "WORKFLOWS_STATUS_KEY_SECRET_ARN"
"""For the CLI and console: the deployed secret holding the status key, read with the operator's
own AWS credentials."""

ENVIRONMENT_NAMES = frozenset(
    {
        MONGODB_URI,
        MONGODB_SECRET_ARN,
        MONGODB_AUTH,
        MONGODB_ROLE_ARN,
        MONGODB_DATABASE,
        RUNS_COLLECTION,
        STATUSES_COLLECTION,
        NOTIFICATIONS_COLLECTION,
        LEASES_COLLECTION,
        ITEMS_COLLECTION,
        SLOTS_COLLECTION,
        EVENTS_COLLECTION,
        JOB_HANDLER,
        INVOKE_FUNCTION,
        INVOKE_PAYLOAD,
        HTTP_REQUEST,
        CALL_REQUEST,
        WORKFLOW_NAME,
        WORKFLOW_DEFINITION_FILE,
        JOB_VERSIONS,
        NOTIFY_TOPIC_ARN,
        SLACK_WEBHOOK_SECRET_ARN,
        STATUS_KEY_SECRET_ARN,
        ORCHESTRATOR_FUNCTION,
    }
)
"""Every variable our functions read; a spec's ``env`` may use none of them."""

PARTNER_SOURCE_PREFIX = "aws.partner/mongodb.com/stitch.trigger/"
"""Atlas names the partner event source of a trigger after the trigger's id."""

SYSTEM_FUNCTION_MEMORY_MB = 256
"""Memory of the orchestrator, notifier and starter."""
SYSTEM_FUNCTION_TIMEOUT_SECONDS = 60
"""Timeout of the orchestrator, notifier and starter."""

RECONCILER_METRICS_NAMESPACE = "MongoLambdaWorkflows"
"""CloudWatch namespace of the runtime's metrics (``runtime.aws.metrics``), with the dimension
``Workflow``; the stack's alarms and dashboard watch them."""
REJECTED_STATUSES_METRIC = "RejectedStatuses"
"""Statuses the orchestrator or the reconciler rejected as not authentic, per workflow."""

SCHEDULED_TIME = "scheduled_time"
"""The key of a scheduled run's input that holds the time the schedule fired (ISO 8601, UTC):
EventBridge Scheduler's ``<aws.scheduler.scheduled-time>``."""

FIRE_TIMERS = "fire_timers"
"""The ``action`` of the timer schedule's event to the reconciler function."""
