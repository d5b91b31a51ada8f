"""The documents the runtime keeps in MongoDB, and the only place a field is spelled: each
collection's stored shape, the typed values the engine reads, and the field paths, guards and
queries every write and read uses. Standard library only (``envelopes`` alone reads Extended
JSON with bson): the engine, the store and the handlers all import it.

- ``run``: the run document (``state-machines``) and the status log (``statuses``)
- ``deployment``: a run's version map (the functions its jobs invoke) and its deploy id
- ``items``: a fan-out's items (``items``) and its counters and lanes in the run document
- ``outputs``: outputs kept by reference (``outputs``, GridFS)
- ``leases``, ``notifications``: the job wrapper's and the notifier's claims
- ``failures``: a run's ``failure`` record; ``listing``: what the run listings select and show
- ``views``: the read views of one workflow, through which its jobs read
- ``events``, ``envelopes``: the job event and Lambda's on-failure record, and their parsers
- ``traces``: a run's W3C trace and span ids, derived from its ids
"""

ID = "_id"
"""Every document's key."""
WORKFLOW = "workflow"
"""The workflow a document belongs to: of a run, a status, a lease, an item, an output."""
