"""Where the runtime finds MongoDB and its collections; read from the environment in Lambda."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from runtime import contracts


@dataclass(frozen=True, kw_only=True)
class StoreSettings:
    database: str = "workflows"
    """Database holding both collections (env ``MONGODB_DATABASE``)."""
    runs_collection: str = "state-machines"
    """One document per run (env ``RUNS_COLLECTION``); the seed's name."""
    statuses_collection: str = "statuses"
    """Append-only status events the Atlas trigger watches (env ``STATUSES_COLLECTION``)."""
    notifications_collection: str = "notifications"
    """The notifier's claims, one per status it reported (env ``NOTIFICATIONS_COLLECTION``)."""
    leases_collection: str = "leases"
    """One lease per job attempt, held by the invocation running it (env ``LEASES_COLLECTION``)."""
    items_collection: str = "items"
    """The items of ``for_each`` jobs, one document each (env ``ITEMS_COLLECTION``)."""
    slots_collection: str = "slots"
    """Run concurrency's slots, one document per workflow and key (env ``SLOTS_COLLECTION``)."""
    events_collection: str = "events"
    """Events sent to workflows, kept for event jobs that wait later (env ``EVENTS_COLLECTION``)."""

    @property
    def read_collections(self) -> tuple[str, str, str, str]:
        """The collections a job reads through its workflow's views (``runtime.documents.views``),
        besides the outputs kept by reference."""
        return (self.runs_collection, self.statuses_collection, self.leases_collection, self.items_collection)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> StoreSettings:
        defaults = cls()
        return cls(
            database=environ.get(contracts.MONGODB_DATABASE, defaults.database),
            runs_collection=environ.get(contracts.RUNS_COLLECTION, defaults.runs_collection),
            statuses_collection=environ.get(contracts.STATUSES_COLLECTION, defaults.statuses_collection),
            notifications_collection=environ.get(
                contracts.NOTIFICATIONS_COLLECTION, defaults.notifications_collection
            ),
            leases_collection=environ.get(contracts.LEASES_COLLECTION, defaults.leases_collection),
            items_collection=environ.get(contracts.ITEMS_COLLECTION, defaults.items_collection),
            slots_collection=environ.get(contracts.SLOTS_COLLECTION, defaults.slots_collection),
            events_collection=environ.get(contracts.EVENTS_COLLECTION, defaults.events_collection),
        )
