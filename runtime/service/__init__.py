"""The use cases: what the Lambda handlers, the CLI, the console and the local cloud call, each
through the ports. Applying one status event to its run (``orchestrator``, with ``fan_out`` for
the items of ``for_each`` jobs), running one job attempt (``job_attempt``), notifying
(``notifier``), starting runs (``runs``), operating them (``operations``, ``approvals``),
repairing them (``reconciler``), firing due timers (``timers``) and deleting the function
versions no running run invokes (``prune``)."""
