"""``task-producer`` and its sub-commands: run-local, enqueue, wait, status, requeue, dashboard, autoscale."""
