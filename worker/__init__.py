"""task-worker: the long-running RQ worker, its one-call fast path, slots, timeouts, recycling and probe."""
