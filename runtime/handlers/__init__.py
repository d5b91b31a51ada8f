"""Lambda entry points only (orchestrator, notifier, job wrapper, starter, reconciler): each reads
its environment, builds the adapters once per process and calls one use case of ``runtime.service``."""
