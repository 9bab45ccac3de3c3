"""task-processor's producer side: the API applications use to enqueue tasks, and the autoscaler."""

from producer.api import Producer, QueueStats, Task
from producer.errors import (
    ConfigError,
    InvalidTaskError,
    RedisUnavailableError,
    TaskFailedError,
    TaskProcessorError,
    WaitTimeoutError,
)

__all__ = [
    "ConfigError",
    "InvalidTaskError",
    "Producer",
    "QueueStats",
    "RedisUnavailableError",
    "Task",
    "TaskFailedError",
    "TaskProcessorError",
    "WaitTimeoutError",
]
