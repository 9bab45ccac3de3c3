"""Errors shared by both sides. Each message is one line that names the problem and the fix."""

from __future__ import annotations


class TaskProcessorError(Exception):
    """Base of every error this project raises on purpose; the CLIs print these as one line."""


class ConfigError(TaskProcessorError, ValueError):
    """A setting (environment variable or option) has a value we cannot use."""


class RedisUnavailableError(TaskProcessorError, ConnectionError):
    """Redis cannot be reached or refuses us; the message carries the URL without its password."""


class RedisCommandError(TaskProcessorError):
    """Redis refused a command: usually data under one of RQ's keys that RQ did not write."""


def undecodable_job(job_id: str, cause: BaseException | None) -> str:
    """Why a job's data cannot be read: written by another serializer, or not by RQ at all."""
    detail = f" ({type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else '-'})" if cause else ""
    return (
        f"cannot decode the data of job {job_id}{detail}: it was not written by a producer with this worker's "
        "TASK_SERIALIZER; use the same serializer on both sides, or delete the job"
    )
