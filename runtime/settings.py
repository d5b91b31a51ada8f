"""Where the runtime finds MongoDB and its collections; read from the environment in Lambda."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class StoreSettings:
    database: str = "workflows"
    """Database holding both collections (env ``MONGODB_DATABASE``)."""
    runs_collection: str = "state-machines"
    """One document per run (env ``RUNS_COLLECTION``); the seed's name."""
    statuses_collection: str = "statuses"
    """Append-only status events the Atlas trigger watches (env ``STATUSES_COLLECTION``)."""
    leases_collection: str = "leases"
    """One lease per job attempt, held by the invocation running it (env ``LEASES_COLLECTION``)."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> StoreSettings:
        defaults = cls()
        return cls(
            database=environ.get("MONGODB_DATABASE", defaults.database),
            runs_collection=environ.get("RUNS_COLLECTION", defaults.runs_collection),
            statuses_collection=environ.get("STATUSES_COLLECTION", defaults.statuses_collection),
            leases_collection=environ.get("LEASES_COLLECTION", defaults.leases_collection),
        )
