"""Notifications once: the notifier claims each status document before it publishes, so
duplicate deliveries send one message, and a crash between the claim and the publish delays the
message (Lambda's retry of the crashed handling sends it) instead of losing it. On a real
MongoDB server, with the local runner's crash harness."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import boto3
import pymongo
import pytest
from botocore.stub import Stubber

from cdk_app.local.atlas_events import envelope
from cdk_app.local.cloud import LocalNotifier
from cdk_app.local.faults import CrashAtStep, CrashingClaims, CrashPlan, InjectedCrash, NoCrash
from runtime.clock import utcnow
from runtime.documents.run import StatusEvent
from runtime.documents.signatures import StatusKeys
from runtime.handlers import notifier
from runtime.ports import NotifyError
from runtime.service.notifier import NotifierService
from runtime.statuses import StatusName
from runtime.store.mongo import MongoStore
from runtime.store.settings import StoreSettings

pytestmark = pytest.mark.faults


class Inbox:
    """The observer of LocalNotifier: every message that went out (thread-safe)."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self._lock = threading.Lock()

    def status(self, event: StatusEvent) -> None:
        raise AssertionError("the notifier reports no statuses")

    def notification(self, subject: str, message: str) -> None:
        with self._lock:
            self.messages.append(message)


@pytest.fixture
def store(mongo_client: pymongo.MongoClient[dict], store_settings: StoreSettings) -> MongoStore:
    """The control plane's store: the notifier reports only statuses signed with its key."""
    return MongoStore(mongo_client, store_settings, StatusKeys.generate())


STATUS_KEY_ARN = "arn:aws:secretsmanager:us-east-1:111111111111:secret:status-key-AbCdEf"


def _event(store: MongoStore, status: StatusName = StatusName.FAILED, attempt: int = 1) -> dict:
    """The Atlas envelope of one status document of a run of its own."""
    report = StatusEvent(
        run_id=f"run-{uuid.uuid4().hex[:8]}",
        workflow="w",
        status=status,
        phase="p",
        job="j" if status == StatusName.FAILED else None,
        attempt=attempt if status == StatusName.FAILED else 0,
        error="boom",
    )
    assert store.keys is not None
    signed = report.signed_by_control(store.keys)
    return envelope(signed.to_document(utcnow()), store.settings.database, store.settings.statuses_collection)


def _deliver(
    store: MongoStore, inbox: Inbox, event: dict, request_id: str, plan: CrashPlan | None = None
) -> None:
    """One notifier handling as the local runner makes it: claims and publish under ``plan``;
    Lambda's retry of a crashed handling comes with the same request id (at once, here)."""
    plan = plan or NoCrash()
    NotifierService(
        notifiers=[LocalNotifier(inbox, plan)],
        claims=CrashingClaims(store, plan),
        retry_after=timedelta(0),
    ).handle(event, request_id)


def test_concurrent_duplicates_of_a_status_send_one_message(store: MongoStore) -> None:
    inbox = Inbox()
    event = _event(store)

    threads = [
        threading.Thread(target=_deliver, args=(store, inbox, event, uuid.uuid4().hex)) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    _deliver(store, inbox, event, uuid.uuid4().hex)  # a late duplicate

    assert len(inbox.messages) == 1
    assert "failed on attempt 1" in inbox.messages[0]


def test_each_status_document_gets_its_own_message(store: MongoStore) -> None:
    inbox = Inbox()
    first, second = _event(store, attempt=1), _event(store, attempt=2)
    run_ended = _event(store, StatusName.WORKFLOW_FAILED)

    for event in (first, second, run_ended, first, second, run_ended):
        _deliver(store, inbox, event, uuid.uuid4().hex)

    assert len(inbox.messages) == 3


CRASH_POINTS = [
    ("before claim_notification", 1),
    ("after claim_notification", 1),
    ("before publishing", 1),
    ("after publishing", 2),
    ("before notification_sent", 2),
    ("after notification_sent", 1),
]
"""Each point one handling passes, with the messages that go out when it dies there: a crash
before the publish never loses the message, a crash after it and before the claim is marked
sent may send it twice."""


@pytest.mark.parametrize(("point", "messages"), CRASH_POINTS, ids=[point for point, _ in CRASH_POINTS])
def test_a_crash_at_any_point_loses_no_message(store: MongoStore, point: str, messages: int) -> None:
    inbox = Inbox()
    event = _event(store)
    crash = CrashAtStep([name for name, _ in CRASH_POINTS].index(point) + 1)
    crashed_request = uuid.uuid4().hex

    with pytest.raises(InjectedCrash, match=point):
        _deliver(store, inbox, event, crashed_request, crash)
    _deliver(store, inbox, event, uuid.uuid4().hex)  # a duplicate arrives while the claim is fresh
    _deliver(store, inbox, event, crashed_request)  # Lambda retries the crashed handling
    _deliver(store, inbox, event, uuid.uuid4().hex)  # and a late duplicate

    assert crash.fired == point
    assert len(inbox.messages) == messages


def test_a_duplicate_does_not_take_over_a_fresh_claim_but_anyone_takes_over_an_expired_one(
    store: MongoStore,
) -> None:
    inbox = Inbox()
    event = _event(store)
    with pytest.raises(InjectedCrash, match="after claim_notification"):
        _deliver(store, inbox, event, uuid.uuid4().hex, CrashAtStep(2))

    _deliver(store, inbox, event, uuid.uuid4().hex)
    assert inbox.messages == []  # the claimant may still be publishing
    # Its retries never came (all crashed, or the event was redriven): the lease runs out.
    NotifierService(notifiers=[LocalNotifier(inbox, NoCrash())], claims=store, lease=timedelta(0)).handle(
        event, uuid.uuid4().hex
    )
    assert len(inbox.messages) == 1


class FailsOnce:
    def __init__(self) -> None:
        self.calls = 0
        self.sent: list[str] = []

    def publish(self, subject: str, message: str) -> None:
        self.calls += 1
        if self.calls == 1:
            raise NotifyError("could not publish: throttled")
        self.sent.append(subject)


def test_a_failed_publish_gives_the_claim_back_so_the_retry_sends(store: MongoStore) -> None:
    channel = FailsOnce()
    service = NotifierService(notifiers=[channel], claims=store)  # Lambda's own retry delay
    event = _event(store)

    with pytest.raises(NotifyError, match="throttled"):
        service.handle(event, "request-1")
    sent = service.handle(event, "request-1")

    assert sent is not None
    assert channel.sent == ["w: job j failed"]
    assert service.handle(event, "request-2") is None
    assert channel.sent == ["w: job j failed"]


def test_the_lambda_entry_point_publishes_once_to_sns_whatever_the_delivery_count(
    store: MongoStore, mongo_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sns = boto3.client("sns", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    monkeypatch.setenv("MONGODB_URI", mongo_uri)
    monkeypatch.setenv("MONGODB_DATABASE", store.settings.database)
    monkeypatch.setenv("NOTIFY_TOPIC_ARN", "arn:aws:sns:us-east-1:111111111111:w-notifications")
    monkeypatch.delenv("SLACK_WEBHOOK_SECRET_ARN", raising=False)
    secrets = boto3.client(
        "secretsmanager", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    monkeypatch.setenv("STATUS_KEY_SECRET_ARN", STATUS_KEY_ARN)
    monkeypatch.setattr(
        boto3, "client", lambda service, **_: {"sns": sns, "secretsmanager": secrets}[service]
    )
    monkeypatch.setattr(notifier, "_state", {})
    event = _event(store)
    assert store.keys is not None
    key_secret = Stubber(secrets)
    key_secret.add_response(
        "get_secret_value", {"SecretString": store.keys.to_text()}, {"SecretId": STATUS_KEY_ARN}
    )
    key_secret.activate()

    class Context:
        def __init__(self) -> None:
            self.aws_request_id = uuid.uuid4().hex

    with Stubber(sns) as stub:  # one publish answered; a second would fail the test
        stub.add_response("publish", {"MessageId": "m-1"})
        results = [notifier.handler(event, Context()) for _ in range(3)]
        stub.assert_no_pending_responses()

    assert [result["sent"] for result in results] == [True, False, False]
