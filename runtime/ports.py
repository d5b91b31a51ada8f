"""What the runtime needs from the world, behind small ports: the run store (MongoDB, in
``runtime.store.mongo``), job dispatch and notifications (AWS, adapters here). The local runner plugs
in-process adapters and fault-injecting wrappers into the same ports."""

from __future__ import annotations

import json
import logging
import urllib.request
from datetime import datetime, timedelta
from typing import Any, Protocol

from runtime.definition.model import job_function_name
from runtime.documents.events import JobEvent
from runtime.documents.leases import Lease
from runtime.documents.listing import RunSummary
from runtime.documents.run import Fields, JobRecord, Run, RunState, StatusEvent, StatusName
from runtime.errors import WorkflowError
from runtime.store.items import ItemStore

log = logging.getLogger(__name__)

SNS_SUBJECT_MAX = 100


class DispatchError(WorkflowError):
    """A job invocation was not accepted."""


class InvocationRefused(DispatchError):
    """Lambda refuses this invocation for good: the job's function does not exist (a job removed
    from the spec while a run that started with it was in flight) or the payload is too large or
    not valid. Retrying cannot help, so it is reported as the attempt's failure and the run ends
    instead of waiting."""


REFUSALS = {
    "ResourceNotFoundException": "the job's function {name} does not exist (was the job removed from the "
    "spec while this run was in flight?)",
    "RequestEntityTooLargeException": "the event for {name} is larger than Lambda accepts (the outputs of "
    "the jobs it runs after are passed in it)",
    "InvalidRequestContentException": "Lambda refused the event for {name} as invalid: {error}",
}
"""Lambda's error codes that no retry can get past, with what to tell people."""


class NotifyError(WorkflowError):
    """A notification was not delivered."""


class RunStore(Protocol):
    """Run documents and the status log, read and written as the engine's typed values. Every
    write that changes a run is conditional on what the writer read (``conditions``, as the
    engine planned them), so concurrent handlers never overwrite each other."""

    def insert_run(self, run: Run) -> bool:
        """Store a new run; False when a run with its id exists already."""

    def read_run(self, run_id: str) -> Run | None: ...

    def read_attempt_state(self, run_id: str, job: str) -> tuple[RunState, JobRecord | None] | None:
        """The run's state and ``job``'s record (None: no such run), without the rest of the run."""

    def apply_transition(
        self, run_id: str, conditions: Fields, changes: Fields, earliest: Fields | None = None
    ) -> bool:
        """Make ``changes`` while the run matches ``conditions``; False when another writer got
        there first."""

    def record_job_success(self, run_id: str, conditions: Fields, changes: Fields) -> Run | None:
        """Record a completion while the run matches ``conditions`` (the job still dispatched at
        that attempt): the run after the write, or None when the completion was recorded before
        (or is stale)."""

    def record_status(self, event: StatusEvent) -> bool:
        """Append a status; False when the same report was recorded before."""

    def read_status(
        self,
        run_id: str,
        phase: str | None,
        job: str | None,
        status: StatusName,
        attempt: int,
        index: int | None = None,
    ) -> StatusEvent | None:
        """One status by its unique key (``index``: of an item of a ``for_each`` job)."""

    def read_terminal_status(
        self, run_id: str, phase: str, job: str, attempt: int, index: int | None = None
    ) -> StatusEvent | None:
        """The ``success`` or ``failed`` report of one attempt (of item ``index``), if any."""

    def read_statuses(self, run_id: str) -> list[StatusEvent]:
        """The run's statuses in the order they were recorded."""

    def acquire_lease(self, lease: Lease) -> bool:
        """Take the lease of an attempt; False when it was taken before (by anyone)."""

    def read_lease(self, lease_id: str) -> Lease | None: ...

    def renew_lease(self, lease: Lease) -> bool:
        """Move the lease's expiry to ``lease.expires_at`` while ``lease.token`` holds it."""

    def find_runs(
        self, workflow: str | None, state: str | None, since: datetime | None, limit: int
    ) -> list[RunSummary]:
        """Runs newest first (by creation), of ``workflow``, in ``state``, created since ``since``."""

    def stale_runs(self, updated_before: datetime, limit: int, workflow: str | None = None) -> list[str]:
        """Ids of running runs (of ``workflow``) last written before ``updated_before``, the
        longest idle first."""

    def read_operations(self, since: datetime, workflow: str | None = None) -> list[StatusEvent]:
        """Cancel and redrive requests (of runs of ``workflow``) recorded since ``since``, oldest first."""

    def expire_statuses(self, run_id: str, expire_at: datetime | None) -> None:
        """Have the run's statuses deleted at ``expire_at`` (None: kept, a redriven run)."""

    def items(self) -> ItemStore:
        """The items of ``for_each`` jobs and the outputs kept by reference, on the same database."""

    def runs_due(self, now: datetime, limit: int, workflow: str | None = None) -> list[str]:
        """Ids of running runs (of ``workflow``) with a timer due at ``now``, the earliest first."""

    def next_wake(self, workflow: str | None = None) -> datetime | None:
        """The earliest time a running run (of ``workflow``) has a timer due; None: no timers."""

    def set_wake(self, run_id: str, version: int, due: datetime | None) -> bool:
        """Set when the run's next timer is due, while the run is still at ``version``."""


class NotificationClaims(Protocol):
    """The notifier's claims: one message per status document, however often it is delivered."""

    def claim_notification(
        self, event: StatusEvent, request_id: str, retry_after: timedelta, lease: timedelta
    ) -> bool:
        """True when the handling ``request_id`` is to send the message about ``event``: nobody
        claimed it yet, or the claim was never marked sent and is either this request's own (a
        retry after a crash) at least ``retry_after`` old, or anybody's at least ``lease`` old."""

    def notification_sent(self, event: StatusEvent) -> None:
        """The message about ``event`` went out: no delivery sends it again."""

    def release_notification(self, event: StatusEvent, request_id: str) -> None:
        """Give up the claim of ``request_id`` (publishing failed), so a retry sends at once."""


class Dispatcher(Protocol):
    def dispatch(self, event: JobEvent) -> None:
        """Start one job attempt asynchronously; at least once."""


class Notifier(Protocol):
    def publish(self, subject: str, message: str) -> None: ...


class LambdaDispatcher:
    """Invokes ``<workflow>-job-<job>`` with ``InvocationType=Event``."""

    def __init__(self, lambda_client: Any) -> None:
        self.client = lambda_client

    def dispatch(self, event: JobEvent) -> None:
        name = job_function_name(event.workflow, event.job)
        try:
            response = self.client.invoke(
                FunctionName=name, InvocationType="Event", Payload=json.dumps(event.to_payload()).encode()
            )
        except Exception as exc:  # botocore's error types vary by cause; all mean "not accepted"
            code = getattr(exc, "response", {}).get("Error", {}).get("Code")
            if code in REFUSALS:
                raise InvocationRefused(REFUSALS[code].format(name=name, error=exc)) from exc
            raise DispatchError(f"could not invoke {name}: {exc}") from exc
        if response.get("StatusCode") != 202:
            raise DispatchError(f"invoking {name} returned status {response.get('StatusCode')}")


class SnsNotifier:
    def __init__(self, sns_client: Any, topic_arn: str) -> None:
        self.client = sns_client
        self.topic_arn = topic_arn

    def publish(self, subject: str, message: str) -> None:
        try:
            self.client.publish(TopicArn=self.topic_arn, Subject=subject[:SNS_SUBJECT_MAX], Message=message)
        except Exception as exc:  # see LambdaDispatcher.dispatch
            raise NotifyError(f"could not publish to {self.topic_arn}: {exc}") from exc


class SlackNotifier:
    """Posts to a Slack incoming webhook whose URL is read from Secrets Manager once."""

    def __init__(self, secrets_client: Any, secret_id: str, timeout: float = 5.0) -> None:
        self.secrets_client = secrets_client
        self.secret_id = secret_id
        self.timeout = timeout
        self._url: str | None = None

    def webhook_url(self) -> str:
        if self._url is None:
            try:
                url = self.secrets_client.get_secret_value(SecretId=self.secret_id)["SecretString"].strip()
            except Exception as exc:  # see LambdaDispatcher.dispatch
                raise NotifyError(f"could not read the Slack webhook secret {self.secret_id}: {exc}") from exc
            if not url.startswith(("https://", "http://")):
                raise NotifyError(f"the Slack webhook secret {self.secret_id} does not hold a URL")
            self._url = url
        return self._url

    def publish(self, subject: str, message: str) -> None:
        body = json.dumps({"text": f"*{subject}*\n{message}"}).encode()
        request = urllib.request.Request(
            self.webhook_url(), data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                if response.status >= 300:
                    raise NotifyError(f"Slack answered {response.status}")
        except OSError as exc:
            raise NotifyError(f"could not post to Slack: {exc}") from exc
