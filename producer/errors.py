"""Errors an application sees from the Producer API; each message names the problem and the fix."""

from __future__ import annotations

from task_processor.errors import ConfigError, RedisCommandError, RedisUnavailableError, TaskProcessorError

__all__ = [
    "ConfigError",
    "DuplicateJobError",
    "InvalidTaskError",
    "RedisCommandError",
    "RedisUnavailableError",
    "ReplicaAcksError",
    "TaskFailedError",
    "TaskProcessorError",
    "WaitTimeoutError",
]


class InvalidTaskError(TaskProcessorError, ValueError):
    """Refused at enqueue: nothing was written to Redis."""


class DuplicateJobError(InvalidTaskError):
    """``unique=True`` and a job with that id is live: nothing of the batch was written."""

    def __init__(self, message: str, job_id: str) -> None:
        super().__init__(message)
        self.job_id = job_id


class ReplicaAcksError(RedisUnavailableError):
    """Redis ran the enqueue, but fewer replicas than TASK_REPLICA_ACKS acknowledged it in time: a failover may still
    lose it. ``job_ids``: the jobs of that call, to enqueue again with ``unique=True``."""

    def __init__(self, message: str, job_ids: list[str]) -> None:
        super().__init__(message)
        self.job_ids = job_ids


class TaskFailedError(TaskProcessorError):
    """A waited-for job ended failed, stopped, canceled, or vanished from Redis."""

    def __init__(self, message: str, job_id: str) -> None:
        super().__init__(message)
        self.job_id = job_id


class WaitTimeoutError(TaskProcessorError, TimeoutError):
    """``wait`` gave up; the jobs are still in Redis and keep running."""
