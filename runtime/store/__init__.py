"""The MongoDB adapters of the ports: ``mongo`` (``MongoStore``: runs, statuses, leases and
notification claims, every write guarded), ``items`` (a fan-out's items), ``outputs`` (outputs
kept by reference, GridFS past 16 MB), ``connection`` (the connection string and the per-process
client) and ``settings`` (database and collection names). Driver errors become ``StoreError``."""
