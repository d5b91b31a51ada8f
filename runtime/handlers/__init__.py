"""Lambda entry points: orchestrator, notifier, job wrapper (with the stub) and starter."""
