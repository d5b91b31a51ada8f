"""What the local runner's timeout watch (``cdk_app.local.timeouts``) reads each second: a job
whose attempts of this round were all decided less than its timeout ago cannot have one past it,
so none of its attempts' statuses is read (a rate-limited fan-out keeps its lanes' items in
flight while they wait for their limit: a read of each, every second, cost the server more than
the limit's own writes). On the real MongoDB server."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pymongo

from cdk_app.local.timeouts import timed_out_attempts
from runtime.clock import utcnow
from runtime.definition.model_limits import RateLimit
from runtime.store.mongo import MongoStore
from runtime.store.settings import StoreSettings
from tests.engine_harness import workflow
from tests.job_limits_harness import Runs


class CountedReads:
    """The store, counting the status reads made through it."""

    def __init__(self, store: MongoStore) -> None:
        self._store = store
        self.reads = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def read_status(self, *args: Any) -> Any:
        self.reads += 1
        return self._store.read_status(*args)


def test_the_watch_reads_no_status_of_a_fan_out_decided_less_than_its_timeout_ago(
    mongo_client: pymongo.MongoClient[dict], store_settings: StoreSettings
) -> None:
    store = MongoStore(mongo_client, store_settings)
    store.ensure_indexes()
    definition = workflow(
        f"jobt_{uuid.uuid4().hex[:8]}",
        {
            "p": {
                "charge": {
                    "for_each": "input.customers",
                    "max_concurrency": 10,
                    "rate_limit": RateLimit(limit=2, period=60),
                    "timeout": 60,
                }
            }
        },
    )
    runs = Runs(store, definition)
    try:
        run_id = runs.start({"customers": [f"c{index}" for index in range(20)]})
        while runs.step():
            pass
        run = store.read_run(run_id)
        assert run is not None
        counted = CountedReads(store)

        assert timed_out_attempts(counted, run, utcnow()) == []
        assert counted.reads == 0

        # Two items started (the limit's two places); past their timeout, the watch finds them.
        late = timed_out_attempts(counted, run, utcnow() + timedelta(seconds=120))
        assert {attempt.event.index for attempt in late} == {index for _, _, index, _ in runs.attempts.held}
        assert len(late) == 2
        assert counted.reads >= 10
    finally:
        runs.attempts.close()
