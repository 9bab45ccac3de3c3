"""What applications import: ``Producer``, ``Task`` and their errors. ``producer.scaling`` is the autoscaler's
control loop, ``producer.commands`` the ``task-producer`` command."""

from producer.api import Producer, QueueStats, Task
from producer.errors import (
    ConfigError,
    DuplicateJobError,
    InvalidTaskError,
    RedisCommandError,
    RedisUnavailableError,
    ReplicaAcksError,
    TaskFailedError,
    TaskProcessorError,
    WaitTimeoutError,
)

__all__ = [
    "ConfigError",
    "DuplicateJobError",
    "InvalidTaskError",
    "Producer",
    "QueueStats",
    "RedisCommandError",
    "RedisUnavailableError",
    "ReplicaAcksError",
    "Task",
    "TaskFailedError",
    "TaskProcessorError",
    "WaitTimeoutError",
]
