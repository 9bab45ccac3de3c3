"""Errors an application sees from the Producer API; each message names the problem and the fix."""

from __future__ import annotations

from task_processor.errors import ConfigError, RedisCommandError, RedisUnavailableError, TaskProcessorError

__all__ = [
    "ConfigError",
    "DuplicateJobError",
    "InvalidTaskError",
    "RedisCommandError",
    "RedisUnavailableError",
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


class TaskFailedError(TaskProcessorError):
    """A waited-for job ended failed, stopped, canceled, or vanished from Redis."""

    def __init__(self, message: str, job_id: str) -> None:
        super().__init__(message)
        self.job_id = job_id


class WaitTimeoutError(TaskProcessorError, TimeoutError):
    """``wait`` gave up; the jobs are still in Redis and keep running."""
