"""The MongoDB adapter of the ``RunStore`` port: run documents in ``state-machines``, status
events in ``statuses``, the job wrapper's leases in ``leases``.

Every write that the engine's invariants depend on is a single-document atomic operation whose
filter states what the writer read (docs/architecture.md, "Invariants", 1): a completion is recorded
only while the job is still dispatched at that attempt, a claim only while the claimed jobs are
still pending in the phase the writer saw. Driver failures are wrapped in ``StoreError``, and a
document MongoDB will never store as it is in ``DocumentRejected``. What the
documents look like is ``runtime.documents.run``' business; how to connect, ``runtime.store.connection``'s.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any, TypeVar

import bson
import pymongo
from bson.errors import InvalidDocument
from bson.raw_bson import RawBSONDocument
from pymongo import ReturnDocument
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import (
    DocumentTooLarge,
    DuplicateKeyError,
    OperationFailure,
    PyMongoError,
)

from runtime.clock import as_utc, utcnow
from runtime.documents import ID
from runtime.documents.deployment import Deployment
from runtime.documents.leases import (
    EXPIRES_AT,
    RENEWS,
    Lease,
    lease_and_renewals,
    lease_from_documents,
    lease_renewal,
)
from runtime.documents.listing import (
    SUMMARY_FIELDS,
    PagePosition,
    RunSummary,
    runs_query,
    summary_from_document,
)
from runtime.documents.notifications import (
    claim_filter,
    claim_sent,
    new_claim,
    own_claim,
    sending_claim,
    stale_claim,
)
from runtime.documents.run import (
    CREATED_AT,
    DATE,
    DEPLOY_ID_FIELD,
    EXPIRE_AT,
    PHASE,
    RUN_STATE,
    STATUS,
    STATUS_KEY,
    UPDATED_AT,
    VERSION,
    WAKE_AT,
    WORKFLOW,
    Document,
    Fields,
    JobRecord,
    Run,
    StatusEvent,
    at_version,
    attempt_projection,
    attempt_state_from_document,
    deployment_of_document,
    expiry_update,
    job_reports_only,
    next_wake_query,
    operations_query,
    run_filter,
    run_from_document,
    run_statuses_query,
    run_to_document,
    running_deployments_query,
    stale_runs_query,
    status_from_document,
    terminal_id,
    timers_due_query,
    touched,
    wake_at,
    without_expiry,
)
from runtime.documents.signatures import StatusKeys, attempt_slot
from runtime.documents.views import output_reference_of, output_references, view_definitions
from runtime.errors import DocumentRejected, StoreError
from runtime.statuses import OPERATION_STATUSES, RunState, StatusName
from runtime.store.items import MongoItems
from runtime.store.job_limits import MongoJobLimits
from runtime.store.sent_events import MongoSentEvents
from runtime.store.settings import StoreSettings
from runtime.store.slots import MongoSlots
from runtime.store.views import ensure_views, workflow_reads

T = TypeVar("T")

DOCUMENT_VALIDATION_FAILURE = 121
REJECTED_DOCUMENT_CODES = frozenset({10334, 17419, 15, 17280, DOCUMENT_VALIDATION_FAILURE})
"""MongoDB's error codes for a document it will never store as it is: BSONObjectTooLarge and
the update-result-too-large of older servers, Overflow (nested too deeply), KeyTooLong, and a
document the collection's validator refuses (``job_reports_only``)."""
UNAUTHORIZED, NAMESPACE_NOT_FOUND, NAMESPACE_EXISTS = 13, 26, 48
ASC, DESC = pymongo.ASCENDING, pymongo.DESCENDING
EXPIRES = {"expireAfterSeconds": 0, "partialFilterExpression": {EXPIRE_AT: {"$type": "date"}}}
"""A TTL index on ``expireAt``, holding only the documents that have a date there: MongoDB's TTL
monitor deletes each once its date has passed, and documents kept for good cost no index entry."""

RUN_INDEXES: Mapping[str, tuple[list[tuple[str, int]], Mapping[str, Any]]] = {
    "runs_by_state": ([(RUN_STATE, ASC), (CREATED_AT, DESC)], {}),
    "runs_of_workflow_by_state": ([(WORKFLOW, ASC), (RUN_STATE, ASC), (CREATED_AT, DESC)], {}),
    "expire_ended_runs": ([(EXPIRE_AT, ASC)], EXPIRES),
    "runs_of_deploy_by_state": (
        [(DEPLOY_ID_FIELD, ASC), (RUN_STATE, ASC), (CREATED_AT, DESC)],
        {"partialFilterExpression": {DEPLOY_ID_FIELD: {"$exists": True}}},
    ),
    "running_by_wake": (
        [(RUN_STATE, ASC), (WAKE_AT, ASC)],
        {"partialFilterExpression": {WAKE_AT: {"$exists": True}}},
    ),
}
"""Indexes of ``state-machines``, few on purpose: every write to a run (two per job attempt) keeps
them all. A listing always names the states it wants (all five when not filtered), so MongoDB
reads each state's runs newest first off one of the two and merges them: a page costs the same at
a million runs, with or without a workflow. The reconciler's stale runs are the ``running`` ones
of these (a run does not stay running for long, so there are few to scan); ended runs expire.
Neither key changes on the hot path, a success that does not end the run. The timer sweep reads
``running_by_wake``, which holds only the runs that have a timer."""

STATUS_INDEXES: Mapping[str, tuple[list[tuple[str, int]], Mapping[str, Any]]] = {
    "one_report_per_slot": ([(name, ASC) for name in STATUS_KEY], {"unique": True}),
    **{
        f"{status.value}_by_date": ([(DATE, ASC)], {"partialFilterExpression": {STATUS: status.value}})
        for status in OPERATION_STATUSES
    },
    "expire_ended_statuses": ([(EXPIRE_AT, ASC)], EXPIRES),
}
"""Indexes of ``statuses``: the unique key (a repeated report is a no-op; also a run's history),
one small index per operation (holding only those requests) for the reconciler's look for recent
ones, and expiry; a job's report is an entry in the unique index only."""
OLD_STATUS_INDEXES = ("one_report_per_attempt", "one_report_per_item_attempt")
"""Earlier unique keys of ``statuses``, dropped by ``ensure_indexes``: the first would refuse the
second item's report of an attempt, the second a report in the slot of its signed attempt."""

RENEWALS_KEPT_SECONDS = 3600
LEASE_INDEXES: Mapping[str, tuple[list[tuple[str, int]], Mapping[str, Any]]] = {
    "renewals_of_lease": ([(RENEWS, ASC)], {"sparse": True}),
    "expire_lease_renewals": (
        [(EXPIRES_AT, ASC)],
        {
            "expireAfterSeconds": RENEWALS_KEPT_SECONDS,
            "partialFilterExpression": {RENEWS: {"$type": "string"}},
        },
    ),
}
"""Indexes of ``leases``: a lease's renewals (``runtime.documents.leases``), read beside it, and
their expiry an hour after they lapse (only the latest counts, and once it has lapsed the lease
has too); the leases themselves are kept."""


@dataclass
class _Bypass:
    """Whether a store's writes to ``statuses`` bypass its validator: shared by the copies a store
    makes of itself, so a server's refusal is learnt once."""

    enabled: bool


def _guard(action: str, call: Callable[[], T]) -> T:
    try:
        return call()
    except DuplicateKeyError:
        raise
    except (DocumentTooLarge, InvalidDocument, OverflowError) as exc:
        raise DocumentRejected(f"could not {action}: {exc}") from exc
    except OperationFailure as exc:
        if exc.code in REJECTED_DOCUMENT_CODES:
            raise DocumentRejected(f"could not {action}: {exc}") from exc
        raise StoreError(f"could not {action}: {exc}") from exc
    except PyMongoError as exc:
        raise StoreError(f"could not {action}: {exc}") from exc


class MongoStore:
    """Run and status documents on one MongoDB database, and the notifier's claims (the
    ``NotificationClaims`` port). Besides the ``RunStore`` port it offers the raw documents
    (``load_run``, ``find_status``, ``run_statuses``, ``insert_status``) for tests and tools that
    check what is stored."""

    def __init__(
        self,
        client: pymongo.MongoClient[Document],
        settings: StoreSettings | None = None,
        keys: StatusKeys | None = None,
        workflow: str | None = None,
        views: bool = True,
        *,
        bypass_validation: bool = True,
    ) -> None:
        """``workflow``: the store reads that workflow's documents alone, through its views
        (``runtime.documents.views``): the job wrapper's store, whose database role may read
        nothing else. Its writes go to the collections. Without ``views``, it reads the
        collections under the views' filter (``WorkflowReads``: the embedded server).

        ``bypass_validation``: the store writes as the control plane, whose statuses pass the
        validator of ``statuses`` (``job_reports_only``) by MongoDB's ``bypassDocumentValidation``,
        and its ``ensure_indexes`` installs that validator. Never for a job's store (``workflow``).
        A server that refuses the privilege (a user without it, such as password mode's
        ``readWrite``) gets the store's writes without it from then on: where no writer holds
        the privilege, there is no validator either (no ``collMod`` right to install it)."""
        self.settings = settings or StoreSettings()
        self._bypass = _Bypass(enabled=bypass_validation and workflow is None)
        self._keys = keys
        self.workflow = workflow
        self.views = views
        database = client[self.settings.database]
        self.database: Database[Document] = database
        self.runs: Collection[Document] = database[self.settings.runs_collection]
        self.statuses: Collection[Document] = database[self.settings.statuses_collection]
        self.notifications: Collection[Document] = database[self.settings.notifications_collection]
        self.leases: Collection[Document] = database[self.settings.leases_collection]
        self._items = MongoItems(self.runs, database[self.settings.items_collection], workflow, views)
        self._slots = MongoSlots(self.runs, database[self.settings.slots_collection])
        self._sent_events = MongoSentEvents(database[self.settings.events_collection])
        self._job_limits = MongoJobLimits(database[self.settings.slots_collection])

        def readable(collection: Collection[Document]) -> Collection[Document]:
            return workflow_reads(database, collection.name, workflow, views)

        self._read_runs = readable(self.runs)
        self._read_statuses = readable(self.statuses)
        self._read_leases = readable(self.leases)
        # The same documents as raw BSON: reading a run this way tells its stored size.
        raw = self.runs.codec_options.with_options(document_class=RawBSONDocument)
        self._raw_runs = self.runs.with_options(codec_options=raw)
        self._raw_read_runs = self._read_runs.with_options(codec_options=raw)

    @property
    def keys(self) -> StatusKeys | None:
        return self._keys

    def with_keys(self, keys: StatusKeys | None) -> MongoStore:
        """The same database, writing as the holder of ``keys``."""
        store = copy.copy(self)
        store._keys = keys
        return store

    def items(self) -> MongoItems:
        """The items of ``for_each`` jobs and the outputs kept by reference."""
        return self._items

    def slots(self) -> MongoSlots:
        """Run concurrency's slots and queue."""
        return self._slots

    def sent_events(self) -> MongoSentEvents:
        """Events kept for event jobs that wait later."""
        return self._sent_events

    def job_limits(self) -> MongoJobLimits:
        """A job's limits across runs (on the slots' collection)."""
        return self._job_limits

    def ensure_indexes(self) -> None:
        """Idempotent; creating an index that exists is a no-op on the server. The unique key of
        ``statuses`` before items had an index of their own is dropped: it would refuse the
        second item's report of an attempt."""
        existing = _guard("list indexes", self.statuses.index_information)
        for old in OLD_STATUS_INDEXES:
            if old in existing:
                _guard("drop an old index", partial(self.statuses.drop_index, old))
        self.items().ensure_indexes()
        self.slots().ensure_indexes()
        self.sent_events().ensure_indexes()
        self.job_limits().ensure_indexes()
        if self._bypass.enabled:
            self._ensure_status_validator()
        for collection, indexes in (
            (self.runs, RUN_INDEXES),
            (self.statuses, STATUS_INDEXES),
            (self.leases, LEASE_INDEXES),
        ):
            for name, (keys, options) in indexes.items():
                _guard(
                    f"create the index {name} on {collection.name}",
                    partial(collection.create_index, keys, name=name, **options),
                )

    def _ensure_status_validator(self) -> None:
        """Installs ``job_reports_only`` on ``statuses`` (creating it when missing); a writer
        without the ``collMod`` right leaves the collection as it is (an operator's CLI, say:
        the starter installs it)."""
        name = self.statuses.name
        options: Document = {"validator": job_reports_only(), "validationLevel": "moderate"}
        set_validator = partial(self.database.command, "collMod", name, **options)
        try:
            set_validator()
        except OperationFailure as exc:
            if exc.code == UNAUTHORIZED:
                return
            if exc.code != NAMESPACE_NOT_FOUND:
                raise StoreError(f"could not set the validator of {name}: {exc}") from exc
            try:
                self.database.create_collection(name, check_exists=False, **options)
            except OperationFailure as made:
                if made.code != NAMESPACE_EXISTS:  # made meanwhile by another process
                    raise StoreError(f"could not create {name}: {made}") from made
                _guard(f"set the validator of {name}", set_validator)
        except PyMongoError as exc:
            raise StoreError(f"could not set the validator of {name}: {exc}") from exc

    def ensure_views(self, workflow: str) -> None:
        """``workflow``'s read views (``runtime.documents.views``), through which its job
        functions read; idempotent, as ``ensure_indexes``, and made by the same functions."""
        ensure_views(self.database, view_definitions(workflow, self.settings.read_collections))

    def adopt_running_runs(self, workflow: str) -> None:
        """The documents of ``workflow``'s running runs that were written before the views
        existed (a run in flight across the deploy that brought them) get their workflow, so
        its jobs read them: the items, and the outputs kept by reference, found by their exact
        ids in the run's statuses and items. Idempotent; the reconciler's, once per process.
        A lease carries none: a duplicate delivery of an attempt claimed before then leaves it
        to its owner."""
        query, _ = running_deployments_query(workflow)
        running: list[str] = _guard(
            f"read the running runs of {workflow}",
            lambda: [document[ID] for document in self.runs.find(query, {ID: 1})],
        )
        for run_id in running:
            self._items.adopt(run_id, workflow, self._output_references(run_id))

    def _output_references(self, run_id: str) -> list[str]:
        query, projection = output_references(run_id, items=False)
        return _guard(
            f"read the outputs of run {run_id!r}",
            lambda: [
                output_reference_of(document, items=False)
                for document in self.statuses.find(query, projection)
            ],
        )

    def reading_as(self, workflow: str, views: bool = True) -> MongoStore:
        """The same database, read through ``workflow``'s views (or their filter): the job
        wrapper's store."""
        return MongoStore(self.database.client, self.settings, self._keys, workflow, views)

    # -- runs --------------------------------------------------------------------------------

    def insert_run(self, run: Run) -> bool:
        """False when a run with this id exists already."""
        document = run_to_document(run, utcnow())
        try:
            _guard("insert the run document", lambda: self.runs.insert_one(document))
        except DuplicateKeyError:
            return False
        return True

    def read_run(self, run_id: str) -> Run | None:
        raw = _guard(f"read run {run_id!r}", lambda: self._raw_read_runs.find_one(run_filter(run_id)))
        return self._decoded(raw)

    def _decoded(self, raw: Any) -> Run | None:
        if raw is None:
            return None
        data: bytes = raw.raw
        return run_from_document(bson.decode(data, self.runs.codec_options), stored_bytes=len(data))

    def read_attempt_state(self, run_id: str, job: str) -> tuple[RunState, JobRecord | None] | None:
        document = _guard(
            f"read run {run_id!r}",
            lambda: self._read_runs.find_one(run_filter(run_id), attempt_projection(job)),
        )
        return None if document is None else attempt_state_from_document(document, job)

    def load_run(self, run_id: str) -> Document | None:
        """The run document as stored."""
        return _guard(f"read run {run_id!r}", lambda: self._read_runs.find_one(run_filter(run_id)))

    def record_job_success(self, run_id: str, conditions: Fields, changes: Fields) -> Run | None:
        raw = _guard(
            f"record a success in run {run_id!r}",
            lambda: self._raw_runs.find_one_and_update(
                {**run_filter(run_id), **conditions},
                {"$set": touched(changes, utcnow()), "$inc": {VERSION: 1}},
                return_document=ReturnDocument.AFTER,
            ),
        )
        return self._decoded(raw)

    def find_runs(
        self,
        workflow: str | None,
        state: str | None,
        since: datetime | None,
        limit: int,
        deploy_id: str | None = None,
        position: PagePosition | None = None,
    ) -> list[RunSummary]:
        query = runs_query(workflow, state, since, deploy_id, position)
        return _guard(
            "list runs",
            lambda: [
                summary_from_document(document)
                for document in self._read_runs.find(query, dict.fromkeys(SUMMARY_FIELDS, 1))
                .sort(CREATED_AT, DESC)
                .limit(limit)
            ],
        )

    def running_deployments(self, workflow: str) -> list[Deployment]:
        """The version maps of ``workflow``'s running runs (few: runs do not stay running long)."""
        query, projection = running_deployments_query(workflow)
        return _guard(
            f"read the version maps of the running runs of {workflow}",
            lambda: [
                deployment
                for document in self._read_runs.find(query, projection)
                if (deployment := deployment_of_document(document)) is not None
            ],
        )

    def stale_runs(self, updated_before: datetime, limit: int, workflow: str | None = None) -> list[str]:
        query = stale_runs_query(updated_before, workflow)
        return _guard(
            "find stale runs",
            lambda: [
                document[ID]
                for document in self._read_runs.find(query, {ID: 1}).sort(UPDATED_AT, ASC).limit(limit)
            ],
        )

    def apply_transition(
        self,
        run_id: str,
        conditions: Mapping[str, Any],
        changes: Mapping[str, Any],
        earliest: Mapping[str, Any] | None = None,
    ) -> bool:
        """Apply ``changes`` only while the run document still has every value in ``conditions``
        (a version guards against any change at all); False when another writer got there first.
        ``earliest`` fields are lowered to their value, never raised (``$min``: a timer's due time).
        Every write bumps the version."""
        update: Document = {"$set": touched(changes, utcnow()), "$inc": {VERSION: 1}}
        if earliest:
            update["$min"] = dict(earliest)
        result = _guard(
            f"update run {run_id!r}",
            lambda: self.runs.update_one({**run_filter(run_id), **conditions}, update),
        )
        return result.matched_count == 1

    def runs_due(self, now: datetime, limit: int, workflow: str | None = None) -> list[str]:
        query = timers_due_query(now, workflow)
        return _guard(
            "find runs with timers due",
            lambda: [
                document[ID]
                for document in self._read_runs.find(query, {ID: 1}).sort(WAKE_AT, ASC).limit(limit)
            ],
        )

    def next_wake(self, workflow: str | None = None) -> datetime | None:
        found = _guard(
            "find the next timer",
            lambda: self._read_runs.find_one(next_wake_query(workflow), {WAKE_AT: 1}, sort=[(WAKE_AT, ASC)]),
        )
        return None if found is None else as_utc(found.get(WAKE_AT))

    def set_wake(self, run_id: str, version: int, due: datetime | None) -> bool:
        """The sweep's next look at the run, while the run is still the ``version`` it read
        (None: the run has no timer left)."""
        update: Document = {"$inc": {VERSION: 1}}
        update |= {"$set": wake_at(due)} if due is not None else {"$unset": {WAKE_AT: ""}}
        result = _guard(
            f"update run {run_id!r}",
            lambda: self.runs.update_one({**run_filter(run_id), **at_version(version)}, update),
        )
        return result.matched_count == 1

    # -- statuses ----------------------------------------------------------------------------

    def record_status(self, event: StatusEvent) -> bool:
        if event.auth is None and self._keys is not None:
            event = event.signed_by_control(self._keys)
        return self.insert_status(event.to_document(utcnow()))

    def insert_status(self, document: Mapping[str, Any]) -> bool:
        """Append a status document; False when the same report was recorded before."""
        try:
            _guard(f"record status {document.get(STATUS)!r}", partial(self._insert_status, dict(document)))
        except DuplicateKeyError:
            return False
        return True

    def _insert_status(self, document: Document) -> None:
        if not self._bypass.enabled:
            self.statuses.insert_one(document)
            return
        try:
            self.statuses.insert_one(document, bypass_document_validation=True)
        except OperationFailure as exc:
            if exc.code != UNAUTHORIZED:
                raise
            self._bypass.enabled = False
            self.statuses.insert_one(document)

    def read_status(
        self,
        run_id: str,
        phase: str | None,
        job: str | None,
        status: StatusName,
        attempt: int,
        index: int | None = None,
    ) -> StatusEvent | None:
        document = self.find_status(run_id, phase, job, status, attempt, index)
        return None if document is None else status_from_document(document)

    def find_status(
        self,
        run_id: str,
        phase: str | None,
        job: str | None,
        status: str,
        attempt: int,
        index: int | None = None,
    ) -> Document | None:
        """One status document as stored, by its unique key (``index``: of an item)."""
        query = dict(zip(STATUS_KEY[:-1], (run_id, phase, job, index, status, attempt), strict=True))
        return _guard("read a status", lambda: self._read_statuses.find_one(query))

    def read_terminal_status(
        self,
        run_id: str,
        phase: str,
        job: str,
        attempt: int,
        index: int | None = None,
        slot: str | None = None,
    ) -> StatusEvent | None:
        # Every terminal report of an attempt has the attempt's one id: a point read, however many
        # statuses there are.
        if slot is None and self._keys is not None:
            slot = attempt_slot(self._keys.attempt_key(run_id, job, attempt, index))
        query = {ID: terminal_id(run_id, job, attempt, index, slot), PHASE: phase}
        document = _guard("read a terminal status", lambda: self._read_statuses.find_one(query))
        return None if document is None else status_from_document(document)

    def read_status_by_id(self, status_id: str) -> StatusEvent | None:
        document = _guard("read a status", lambda: self._read_statuses.find_one({ID: status_id}))
        return None if document is None else status_from_document(document)

    # -- leases ------------------------------------------------------------------------------

    def acquire_lease(self, lease: Lease) -> bool:
        try:
            _guard("acquire a lease", lambda: self.leases.insert_one(lease.to_document()))
        except DuplicateKeyError:
            return False
        return True

    def read_lease(self, lease_id: str, attempt_key: str | None = None) -> Lease | None:
        documents = _guard("read a lease", lambda: list(self._read_leases.find(lease_and_renewals(lease_id))))
        return lease_from_documents(lease_id, documents, attempt_key)

    def renew_lease(self, lease: Lease, attempt_key: str | None = None) -> None:
        _guard("renew a lease", lambda: self.leases.insert_one(lease_renewal(lease, attempt_key)))

    def read_statuses(self, run_id: str, *, items: bool = True) -> list[StatusEvent]:
        """The run's statuses in the order they were recorded; without ``items``, not the reports
        of a fan-out's items (a 10,000-item job has 20,000 or more), which the run's counters sum up."""
        if items:
            return [status_from_document(document) for document in self.run_statuses(run_id)]
        query = run_statuses_query(run_id, items=False)
        return _guard(
            f"read the statuses of run {run_id!r}",
            lambda: [
                status_from_document(document) for document in self._read_statuses.find(query).sort(DATE, ASC)
            ],
        )

    def read_operations(self, since: datetime, workflow: str | None = None) -> list[StatusEvent]:
        query = operations_query(since, workflow)
        return _guard(
            "read recent operations",
            lambda: [
                status_from_document(document) for document in self._read_statuses.find(query).sort(DATE, ASC)
            ],
        )

    def expire_statuses(self, run_id: str, expire_at: datetime | None) -> None:
        """Only the statuses without an expiry are written when one is set, so stamping again
        for a late report touches that report alone. The run's items and outputs kept by
        reference get the same expiry."""
        _guard(
            f"set the expiry of run {run_id!r}'s statuses",
            lambda: self.statuses.update_many(
                run_statuses_query(run_id) | without_expiry(expire_at), expiry_update(expire_at)
            ),
        )
        self.items().expire(run_id, expire_at)

    def run_statuses(self, run_id: str) -> list[Document]:
        """The run's status documents as stored, in the order they were recorded."""
        return _guard(
            f"read the statuses of run {run_id!r}",
            lambda: list(self._read_statuses.find(run_statuses_query(run_id)).sort(DATE, pymongo.ASCENDING)),
        )

    def count_statuses(self, run_id: str) -> int:
        return _guard(
            f"count the statuses of run {run_id!r}",
            lambda: self._read_statuses.count_documents(run_statuses_query(run_id)),
        )

    # -- notification claims -----------------------------------------------------------------

    def claim_notification(
        self, event: StatusEvent, request_id: str, retry_after: timedelta, lease: timedelta
    ) -> bool:
        """Insert the claim (its ``_id`` is the status document's key, so one insert wins), or
        take over a claim still ``sending`` that this request made ``retry_after`` ago or anyone
        made ``lease`` ago: both are one atomic write, so two deliveries never both win."""
        now = utcnow()
        try:
            _guard(
                "claim a notification",
                lambda: self.notifications.insert_one(new_claim(event, request_id, now)),
            )
        except DuplicateKeyError:
            taken = _guard(
                "take over a notification claim",
                lambda: self.notifications.update_one(
                    stale_claim(event, request_id, now, retry_after, lease),
                    {"$set": sending_claim(request_id, now)},
                ),
            )
            return taken.matched_count == 1
        return True

    def notification_sent(self, event: StatusEvent) -> None:
        _guard(
            "mark a notification sent",
            lambda: self.notifications.update_one(claim_filter(event), {"$set": claim_sent(utcnow())}),
        )

    def release_notification(self, event: StatusEvent, request_id: str) -> None:
        _guard(
            "release a notification claim",
            lambda: self.notifications.delete_one(own_claim(event, request_id)),
        )
