"""The engine: pure decisions, no I/O. ``decide`` (``runtime.engine.decide``) takes a run as
stored, one status event and the time, and returns what to write, dispatch and record; the
planners beside it decide progress, operations, timers, joins, fan-outs, retries, failure
handlers and replays; ``upgrade`` says whether an ended run can move to another definition.
Nothing here imports pymongo, boto3 or botocore (a test holds it to that), so every decision is
tested without a server."""
